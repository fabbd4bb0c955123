"""One package per console area, plus the JSON API."""


def register_blueprints(app) -> None:
    from portal.blueprints.agent_api import bp as agent_api_bp
    from portal.blueprints.api import bp as api_bp
    from portal.blueprints.auth import bp as auth_bp
    from portal.blueprints.branch import bp as branch_bp
    from portal.blueprints.cloud_links import bp as cloud_links_bp
    from portal.blueprints.computers import bp as computers_bp
    from portal.blueprints.copies import bp as copies_bp
    from portal.blueprints.dashboard import bp as dashboard_bp
    from portal.blueprints.deployments import bp as deployments_bp
    from portal.blueprints.distribution_points import bp as dps_bp
    from portal.blueprints.jobs import bp as jobs_bp
    from portal.blueprints.libraries import bp as libraries_bp
    from portal.blueprints.notifications import bp as notifications_bp
    from portal.blueprints.settings import bp as settings_bp
    from portal.blueprints.status import bp as status_bp

    for bp in (auth_bp, dashboard_bp, dps_bp, libraries_bp, copies_bp, jobs_bp, notifications_bp,
               settings_bp, status_bp, api_bp, cloud_links_bp, computers_bp, deployments_bp,
               branch_bp, agent_api_bp):
        app.register_blueprint(bp)
