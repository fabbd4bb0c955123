"""Cloud DPs: moto's S3 server and S3 DPs (until tests/conftest.py lists tests.cloud.s3_fixtures
in pytest_plugins)."""
from tests.cloud.s3_fixtures import *  # noqa: F401,F403
from tests.cloud.dropbox_fixtures import *  # noqa: F401,F403
from tests.cloud.gdrive_fixtures import *  # noqa: F401,F403
from tests.cloud.onedrive_fixtures import *  # noqa: F401,F403
