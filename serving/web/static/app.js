// Niceties for the at-risk list. The page works without this file: the filter form submits
// with GET, and sorting and paging are plain links.
(function () {
  "use strict";

  var form = document.getElementById("filters");
  if (form) {
    // Apply a tier, region, manager or page-size choice at once.
    form.addEventListener("change", function (event) {
      var target = event.target;
      if (target.matches("select, input[type=checkbox]")) {
        if (form.requestSubmit) {
          form.requestSubmit();
        } else {
          form.submit();
        }
      }
    });
    // Leave empty fields out of the URL, so shared links stay short.
    form.addEventListener("submit", function () {
      Array.prototype.forEach.call(form.elements, function (element) {
        if (element.name && element.type !== "checkbox" && element.value === "") {
          element.disabled = true;
        }
      });
      if (form.elements.size && form.elements.size.value === "50") {
        form.elements.size.disabled = true;
      }
    });
    // Coming back with the browser's back button restores the fields disabled above.
    window.addEventListener("pageshow", function () {
      Array.prototype.forEach.call(form.elements, function (element) {
        element.disabled = false;
      });
    });
  }

  var copy = document.querySelector("[data-copy-link]");
  if (copy && navigator.clipboard && window.isSecureContext) {
    copy.hidden = false;
    // the words come from the page, in its language
    var label = copy.textContent;
    copy.addEventListener("click", function () {
      navigator.clipboard.writeText(window.location.href.split("#")[0]).then(function () {
        copy.textContent = copy.getAttribute("data-copied") || label;
        window.setTimeout(function () { copy.textContent = label; }, 2000);
      });
    });
  }
})();
