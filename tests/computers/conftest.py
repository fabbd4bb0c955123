"""Computer Management: central plus two DP rows, devices inserted as rows (tests.factories)."""
import pytest

from tests.factories import add_dp


@pytest.fixture
def dps(app, central):
    """Central plus two DP nodes: {'central', 'seattle', 'slc'}."""
    return {"central": central, "seattle": add_dp("Seattle"), "slc": add_dp("SLC")}
