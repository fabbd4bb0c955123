"""Flask commands for ops: `flask --app wsgi init | users | tokens | demo | jobs | dp-node |
watch-central`."""
import os
import sys

import click
from flask import current_app
from sqlalchemy import select

from portal.core.errors import DepotError
from portal.extensions import db
from portal.models import User
from portal.services import accounts, demo, job_recovery, jobs, two_factor
from portal.services import distribution_points as dps
from portal.services.actors import Actor

CLI = Actor(None, via="cli")


def init_app(app) -> None:
    app.cli.add_command(init_command)
    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(jobs_cli)
    app.cli.add_command(dp_node_cli)
    app.cli.add_command(secrets_cli)
    app.cli.add_command(enrollment_cli)
    app.cli.add_command(watch_central_command)


def initialise() -> None:
    """The central DP with its library folders, and the first admin; exits with a message on error."""
    try:
        central = dps.ensure_central()
    except DepotError as exc:
        click.echo(f"error: {exc.message}. Create it, fix its permissions, or set "
                   f"DEPOT_CENTRAL_ROOT to another folder.", err=True)
        sys.exit(1)
    click.echo(f"Central distribution point: {central.root}")
    try:
        user, generated = accounts.ensure_first_admin(
            current_app.config["DEPOT_ADMIN_EMAIL"], current_app.config["DEPOT_ADMIN_PASSWORD"])
    except DepotError as exc:
        click.echo(f"error: the first admin from DEPOT_ADMIN_EMAIL / DEPOT_ADMIN_PASSWORD was "
                   f"refused: {exc.message}. Fix it, or unset DEPOT_ADMIN_PASSWORD to have one "
                   f"generated.", err=True)
        sys.exit(1)
    if user and generated:
        click.echo("=" * 64)
        click.echo(f"First admin created: {user.email}")
        click.echo(f"Password (shown once, change it in Settings): {generated}")
        click.echo("=" * 64)
    elif user:
        click.echo(f"First admin created: {user.email} (password from DEPOT_ADMIN_PASSWORD)")


@click.command("init")
def init_command():
    """Create the central DP, its library folders and the first admin (safe to run again)."""
    initialise()


@click.group("users")
def users_cli():
    """Manage console users."""


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(["admin", "technician", "viewer"]), default="admin")
@click.option("--site", "sites", multiple=True, help="For viewers: a site they may see.")
@click.password_option()
def create_user(email, role, sites, password):
    """Add a user."""
    try:
        user = accounts.create_user(CLI, email, password, role, list(sites))
    except DepotError as exc:
        raise click.ClickException(exc.message)
    click.echo(f"created {user.role} {user.email}")


@users_cli.command("reset-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True,
              help="Read the new password from the first line of standard input (scripts) "
                   "instead of asking for it twice.")
def reset_password(email, password_stdin):
    """Break-glass: give EMAIL a new password, end every console session of that person and
    clear the sign-in throttling of the account (audited). For when nobody can sign in as an
    admin; in the console, an admin sets passwords under Settings, Users."""
    try:
        user = accounts.user_by_email(email)
    except DepotError as exc:
        raise click.ClickException(exc.message)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        accounts.reset_password(CLI, user, password)
    except DepotError as exc:
        raise click.ClickException(f"the password was refused, nothing was changed: "
                                   f"{exc.message}")
    click.echo(f"New password set for {user.email}; every console session of it was signed out "
               f"and its sign-in throttling cleared.")
    if not user.active:
        click.echo(f"Note: {user.email} is deactivated and cannot sign in until an admin "
                   f"activates it again.")
    if two_factor.enabled(user):
        click.echo(f"Note: {user.email} still signs in with a code from its authenticator app "
                   f"(or a recovery code); another admin can reset that under Settings, Users.")


@click.group("tokens")
def tokens_cli():
    """Manage API tokens."""


@tokens_cli.command("create")
@click.option("--email", required=True, help="The user the token acts as.")
@click.option("--name", required=True, help="What the token is for, e.g. 'backup script'.")
def create_token(email, name):
    """Create a personal API token and print it (it is shown only once)."""
    user = db.session.scalars(select(User).where(User.email == email.strip().lower())).first()
    if user is None:
        raise click.ClickException(f"no user {email}")
    try:
        _, secret = accounts.create_token(Actor(None, via="cli"), user, name)
    except DepotError as exc:
        raise click.ClickException(exc.message)
    click.echo(secret)


@click.group("demo")
def demo_cli():
    """Demo content."""


@demo_cli.command("seed")
@click.option("--no-rescan", is_flag=True, help="Only write the files.")
def seed(no_rescan):
    """Fill the central root with a small demo (a few MB in every library, WIM images captured
    with wimlib-imagex where it is installed), create the groups SLC office, Seattle office and
    Remote workers, and rescan central."""
    central = dps.ensure_central()
    wimlib = demo.wimlib()
    try:
        written = demo.seed_central(central.root, wimlib)
    except DepotError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    click.echo(f"demo content: {written} files written under {central.root}")
    if wimlib:
        click.echo(f"demo images: real WIM images, captured with {wimlib}")
    else:
        click.echo(f"warning: {demo.NO_WIMLIB}", err=True)
        demo.tell_images_unusable(central.id)
    for group in demo.seed_groups(CLI):
        preferred = group.preferred_dp.name if group.preferred_dp else "none"
        click.echo(f"group {group.name}: preferred DP {preferred} ({group.description})")
    if not no_rescan:
        job, _ = jobs.start_job("rescan", CLI, dp_id=central.id, dedup_key=f"rescan:{central.id}")
        click.echo(f"rescan queued: job {job.id}")


@click.group("jobs")
def jobs_cli():
    """Job upkeep."""


@jobs_cli.command("recover")
def recover():
    """Requeue jobs that the database says are queued or running but no live worker holds."""
    outcome = job_recovery.recover_lost_jobs()
    for job_id, what in outcome.items():
        click.echo(f"{job_id}: {what}")
    click.echo(f"{len(outcome)} job(s) recovered")


@click.group("secrets")
def secrets_cli():
    """Secrets at rest (DP keys, cloud keys and tokens, upload sessions, enrollment tokens)."""


@secrets_cli.command("rotate")
def rotate_secrets():
    """Encrypt every stored secret again with the first key of DEPOT_ENCRYPTION_KEY."""
    from cryptography.fernet import InvalidToken

    from portal.services import secrets

    try:
        counts = secrets.rotate_all()
    except InvalidToken:
        click.echo("error: a stored secret opens with none of the keys in DEPOT_ENCRYPTION_KEY; "
                   "keep the old key in the list (after the new one) while rotating", err=True)
        sys.exit(1)
    click.echo(", ".join(f"{n} {what}" for what, n in counts.items()) + " encrypted again")


@click.group("dp-node")
def dp_node_cli():
    """Run this machine as a DP node (a branch's distribution point)."""


@dp_node_cli.command("run")
@click.option("--root", default=None,
              help="The content root this node serves (default: DEPOT_DP_ROOT, else C:\\Depot "
                   "on Windows and data/dp-node here).")
@click.option("--bind", default="0.0.0.0:8081", show_default=True, help="HOST:PORT to listen on.")
@click.option("--server", type=click.Choice(["waitress", "gunicorn"]), default=None,
              help="The HTTP server (default: waitress on Windows, gunicorn elsewhere).")
@click.option("--workers", default=1, show_default=True, help="gunicorn worker processes.")
@click.option("--cert", default=None, help="Serve HTTPS with this certificate (PEM).")
@click.option("--key", default=None, help="The certificate's private key (PEM).")
@click.option("--self-signed", is_flag=True,
              help="Serve HTTPS with the node's own certificate, made on first start in "
                   "<root>/.depot/tls/ and reused after.")
def dp_node_run(root, bind, server, workers, cert, key, self_signed):
    """Serve a content root as a DP node (key from DEPOT_DP_KEY)."""
    from portal.dpnode import NodeMisconfigured
    from portal.dpnode.cli import serve

    try:
        serve(root, bind, workers, server, cert=cert, key=key, self_signed=self_signed)
    except NodeMisconfigured as exc:
        raise click.ClickException(exc.message)


@dp_node_cli.command("fingerprint")
@click.option("--root", default=None, help="The content root (for a --self-signed node).")
@click.option("--cert", default=None, help="A certificate file (default: the self-signed one).")
def dp_node_fingerprint(root, cert):
    """Print the SHA-256 fingerprint of the node's certificate, to compare with the console's."""
    from portal.dpnode import NodeMisconfigured
    from portal.dpnode.cli import fingerprint

    try:
        click.echo(fingerprint(root, cert))
    except NodeMisconfigured as exc:
        raise click.ClickException(exc.message)


@dp_node_cli.command("central")
def dp_node_central():
    """Serve central's content root to endpoints (downloads only) on DEPOT_CENTRAL_DP_BIND:
    central's DP node, with the key central signs its links with (DEPOT_CENTRAL_DP_KEY)."""
    from portal.dpnode.cli import serve

    config = current_app.config
    try:
        host, port = central_node_settings(config)
        os.environ.update(DEPOT_DP_KEY=config["DEPOT_CENTRAL_DP_KEY"], DEPOT_DP_DOWNLOADS_ONLY="1")
        # A gthread worker takes connections beyond its 16 threads and queues them behind whole
        # downloads even while another worker has threads free (one of 50 endpoints waited out
        # bench/central_load.py): each takes only what it can serve; the rest wait in the
        # kernel's backlog for whichever worker frees a thread first. No keep-alive: a held idle
        # connection would take a download's place. (An admin's own GUNICORN_CMD_ARGS win.)
        os.environ.setdefault("GUNICORN_CMD_ARGS", "--worker-connections 16 --keep-alive 0")
        serve(config["DEPOT_CENTRAL_ROOT"], f"{host}:{port}", config["DEPOT_CENTRAL_DP_WORKERS"])
    except DepotError as exc:  # a setting of central's node, or a root the node refuses
        raise click.ClickException(exc.message) from None


def central_node_settings(config) -> tuple[str, int]:
    """(host, port) of central's DP node; CentralNodeMisconfigured naming a setting that will
    not do."""
    from portal.core.central_node import check_settings

    return check_settings(config["DEPOT_CENTRAL_DP_BIND"], config["DEPOT_CENTRAL_DP_URL"],
                          config["DEPOT_CENTRAL_DP_KEY"], config["DEPOT_CENTRAL_DP_WORKERS"])


@click.command("watch-central")
def watch_central_command():
    """Watch central's content root and rescan central once a change has been quiet for
    DEPOT_WATCH_QUIET seconds (`make run` starts it; Ctrl-C or SIGTERM stops it)."""
    import signal

    from portal.services import central_changes

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    root = dps.ensure_central().root
    db.session.remove()
    click.echo(f"Watching {root}: central is rescanned once changes there are quiet")
    try:
        central_changes.watch(root, current_app.config["DEPOT_WATCH_QUIET"], lambda: bool(stopping))
    except KeyboardInterrupt:
        pass


@click.group("enrollment-token")
def enrollment_cli():
    """Enrollment tokens for endpoints' agents."""


@enrollment_cli.command("create")
@click.option("--name", required=True, help="What the token is for, e.g. 'Seattle laptops'.")
@click.option("--days", default=7, show_default=True, help="How many days it stays valid (1-365).")
@click.option("--group", help="A group (name or id) that devices enrolled with it join.")
def create_enrollment_token(name, days, group):
    """Create an enrollment token; print it and the command that starts the agent with it."""
    from portal.models import DeviceGroup
    from portal.services import enrollment

    group_id = None
    if group:
        found = db.session.scalars(select(DeviceGroup).where(
            db.func.lower(DeviceGroup.name) == group.strip().lower())).first()
        if found is None and group.strip().isdigit():
            found = db.session.get(DeviceGroup, int(group.strip()))
        if found is None:
            raise click.ClickException(f"no group {group}; create it in Computer Management first")
        group_id = found.id
    try:
        token, secret = enrollment.create_enrollment_token(CLI, name, days, group_id)
    except DepotError as exc:
        raise click.ClickException(exc.message)
    server = enrollment.server_url("http://<this-server>:8080")
    click.echo(secret)
    click.echo(f"valid until {token.expires_at:%Y-%m-%d %H:%M} UTC"
               + (f"; devices join {token.group.name}" if token.group else ""), err=True)
    click.echo("Start the agent on an endpoint with:", err=True)
    click.echo(f"  {enrollment.module_command(server, secret)}", err=True)
