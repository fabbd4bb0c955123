"""Settings, Notifications: what rings one's own bell. Failures and what needs someone always do;
routine successes only when the person asks for them.

The form lives here rather than in forms.py: it is this page's only form and nothing else uses it.
"""
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField

from portal.blueprints.settings import bp
from portal.services import notifications
from portal.web.views import page_or_fragment


class NotificationChoicesForm(FlaskForm):
    """One's own choice: routine successes too, or only what needs someone."""

    successes = BooleanField("Also tell me of routine successes")


def _page(form, done=False, status=200):
    return page_or_fragment("settings/notifications.html", "settings/_notifications.html",
                            form=form, done=done, always=notifications.NEEDS_ATTENTION,
                            routine=notifications.ROUTINE), status


@bp.get("/notifications")
@login_required
def notification_choices():
    """What rings your bell: failures always, routine successes if you ask."""
    return _page(NotificationChoicesForm(successes=current_user.notify_successes))


@bp.post("/notifications")
@login_required
def choose_notifications():
    """Turn routine successes on or off for yourself."""
    form = NotificationChoicesForm()
    if not form.validate_on_submit():  # only a missing or stale CSRF token gets here
        return _page(form, status=400)
    notifications.choose_successes(current_user, form.successes.data)
    return _page(NotificationChoicesForm(formdata=None,
                                         successes=current_user.notify_successes), done=True)
