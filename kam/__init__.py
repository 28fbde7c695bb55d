"""kam: defection risk and value for B2B key accounts.

From Python, :func:`open_project` gives a :class:`Project` (see :mod:`kam.project`); the command
line is ``kam``. Both are loaded on first use, so ``import kam.features`` stays light.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kam.project import Candidate, Explanation, Project, ProjectNotFoundError, open_project

__all__ = ["Candidate", "Explanation", "Project", "ProjectNotFoundError", "open_project"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kam import project

        return getattr(project, name)
    raise AttributeError(f"module 'kam' has no attribute {name!r}")
