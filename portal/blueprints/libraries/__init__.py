from flask import Blueprint

bp = Blueprint("libraries", __name__, url_prefix="/libraries")

from portal.blueprints.libraries import routes  # noqa: E402,F401
from portal.blueprints.libraries.uploads import bp as uploads_bp  # noqa: E402

bp.register_blueprint(uploads_bp)
