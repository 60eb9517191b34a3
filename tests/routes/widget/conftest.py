from tests.sync.conftest import fast_budgets, world

__all__ = ["fast_budgets", "world"]
