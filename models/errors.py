"""Domain exceptions of the model layer."""


class ModelNotLoadedError(RuntimeError):
    """No model could be loaded (nothing registered, or the alias points nowhere)."""


class FeatureRowError(ValueError):
    """A posted feature row does not satisfy the feature spec.

    ``errors`` maps each bad field to what is wrong with it.
    """

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
