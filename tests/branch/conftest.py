"""The branch view reuses the deployments fixtures (content at central, the DP node Seattle)."""
from tests.deployments import conftest as deployments

content = deployments.content
seattle_image = deployments.seattle_image
seattle_all = deployments.seattle_all
