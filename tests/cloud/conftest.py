"""Cloud DPs: moto's S3 server and each OAuth provider's local server (tests/fakes/), with
connected DPs. The fixtures live one module per provider; tests outside tests/cloud import the
ones they need."""
from tests.cloud.dropbox_fixtures import *  # noqa: F401,F403
from tests.cloud.gdrive_fixtures import *  # noqa: F401,F403
from tests.cloud.onedrive_fixtures import *  # noqa: F401,F403
from tests.cloud.s3_fixtures import *  # noqa: F401,F403
