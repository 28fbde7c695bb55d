"""Domain exceptions raised at the data boundary."""


class DataContractError(ValueError):
    """Input data does not satisfy the data contract (missing file, column or table)."""


class EmptyWindowError(ValueError):
    """A feature or label window holds no data where some is required."""


class ShrinkRefused(DataContractError):
    """An ingest would empty, drop or shrink a stored table by more than the setting allows."""
