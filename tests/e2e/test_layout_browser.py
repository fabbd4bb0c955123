"""The console at phone width and in the dark, in a real browser: no page wider than a 390 px
screen, the sidebar behind a menu button, the DP switcher keeping a half-filled deploy form, text
readable (>= 4.5:1) in both colour schemes, and the skip link first."""
import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.models import Deployment, User
from tests import factories
from tests.e2e.conftest import REPORT_VIOLATIONS, save_screenshot
from tests.factories import add_copy_job, add_device, add_dp
from tests.helpers import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PHONE = {"width": 390, "height": 844}
NARROWEST = {"width": 360, "height": 740}
MAIN_PAGES = ["/", "/distribution-points/", "/libraries/images", "/computers/", "/deployments/",
              "/deployments/new", "/jobs/", "/settings/users", "/status/"]

# The contrast of each element `selector` matches against the first opaque background behind
# it (WCAG's relative luminance); the ones below `least`, with their class and text.
LOW_CONTRAST = """([selector, least]) => {
  const channels = (text) => text.match(/[\\d.]+/g).map(Number);
  const linear = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const luminance = ([r, g, b]) => 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = channels(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const el of document.querySelectorAll(selector)) {
    if (!el.getClientRects().length || !el.textContent.trim()) continue;
    const a = luminance(channels(getComputedStyle(el).color)), b = luminance(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < least) low.push(`${el.tagName}.${el.className} "${el.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
  }
  return low;
}"""
TEXT = "body, h1, h2, p, td, th, a, label, .muted, .small, .badge, .who, .topbar .link, .sidebar a"


def new_page(browser, csp_violations, **options):
    """A page in a context of its own (viewport, colour scheme), reporting CSP refusals like the
    `page` fixture does."""
    context = browser.new_context(**options)
    context.expose_function("depotCspViolation", lambda text: csp_violations.append(text))
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


@pytest.fixture
def console_data(app, central, rescan):
    """An admin, two DPs, a device, an image at central, a running copy and deployment."""
    factories.make_user(role="admin", email="admin.with.a.long.name@example.com")
    factories.write_file(central.root, "Images/Win11-23H2-Enterprise-x64.wim", b"w" * 4096)
    rescan(central)
    seattle = add_dp("Seattle", site="Seattle office")
    add_dp("Salt Lake City", site="SLC")
    device = add_device("SEA-LT-0001-LONG-HOSTNAME", ips=["10.2.0.11"], seen_ago=20)
    add_copy_job(seattle, key="Images/Win11-23H2-Enterprise-x64.wim", bytes_done=42, bytes_total=100)
    db.session.add(Deployment(batch_id="b1", device_id=device.id, device_name=device.name,
                              dp_name="Seattle", image="Images/Win11-23H2-Enterprise-x64.wim",
                              state="downloading", bytes_done=1, bytes_total=4))
    db.session.commit()
    return central, seattle


def test_phone_width_menu_and_a_dp_switch_that_keeps_the_form(browser, console_data, live_server,
                                                              csp_violations):
    """At 390 px is no page wider than the screen; at 360 px does the menu button open the
    sidebar, are the top bar's email and Sign out on screen, and does switching the DP keep a half-filled deploy
    form (no reload) while a library page asks first?"""
    central, seattle = console_data
    page = new_page(browser, csp_violations, viewport={"width": 1280, "height": 800})
    sign_in(page, live_server, "admin.with.a.long.name@example.com")  # waits for the sidebar
    page.set_viewport_size(PHONE)
    for path in MAIN_PAGES:
        assert page.goto(live_server + path).ok, path
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], f"{path} is {widths[0]} px wide at {widths[1]} px"
    assert page.evaluate(LOW_CONTRAST, [TEXT, 4.5]) == []  # light scheme, on the status matrix

    page.set_viewport_size(NARROWEST)  # the top bar fits at 360 px too
    page.goto(f"{live_server}/deployments/")
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROWEST["width"]
    nav = page.get_by_role("navigation", name="Main")
    menu = page.get_by_role("button", name="Menu")
    expect(nav).to_be_hidden()
    expect(menu).to_have_attribute("aria-expanded", "false")
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(nav.get_by_role("link", name="Jobs")).to_be_visible()
    save_screenshot(page, "phone-menu")
    page.keyboard.press("Escape")
    expect(nav).to_be_hidden()
    expect(menu).to_be_focused()
    for name in ("admin.with.a.long.name@example.com", "Sign out"):
        box = page.locator(".topbar").get_by_text(name).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= NARROWEST["width"], name

    # A half-filled deploy form survives a switch: no reload, the values stay, the DP is kept.
    page.goto(f"{live_server}/deployments/new")
    page.wait_for_function("() => window.htmx !== undefined")
    devices, image = page.locator("#deploy-form [name=device_id]"), page.locator("#deploy-form [name=image]")
    devices.select_option(label="SEA-LT-0001-LONG-HOSTNAME")
    image.select_option("Images/Win11-23H2-Enterprise-x64.wim")
    page.evaluate("window.depotNoReload = true")
    with page.expect_response(lambda r: r.url.endswith("/distribution-points/select")) as answer:
        page.locator("#dp-switcher").select_option(str(seattle.id))
    assert answer.value.status == 204
    expect(image).to_have_value("Images/Win11-23H2-Enterprise-x64.wim")
    expect(devices.locator("option:checked")).to_have_text(
        "SEA-LT-0001-LONG-HOSTNAME")
    assert page.evaluate("window.depotNoReload") is True
    user = db.session.scalars(db.select(User).filter_by(
        email="admin.with.a.long.name@example.com")).one()
    db.session.refresh(user)
    assert user.selected_dp_id == seattle.id

    # A library shows the selected DP: with a ticked asset it asks; "no" keeps page and DP.
    page.goto(f"{live_server}/libraries/images")
    expect(page.get_by_role("heading", level=1)).to_contain_text("at Seattle")
    page.wait_for_function("() => window.htmx !== undefined")
    page.locator("tr.asset input[type=checkbox]").first.check()
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    page.locator("#dp-switcher").select_option(str(central.id))
    expect(page.locator("#dp-switcher")).to_have_value(str(seattle.id))
    assert questions and "what you entered here is lost" in questions[0]
    page.locator("tr.asset input[type=checkbox]").first.uncheck()  # nothing unsaved: it reloads
    page.locator("#dp-switcher").select_option(str(central.id))
    expect(page.get_by_role("heading", level=1)).to_contain_text("at Central")
    assert not csp_violations, csp_violations


def test_dark_scheme_contrast_and_the_skip_link(browser, console_data, live_server,
                                                csp_violations):
    """In the dark colour scheme is every text (muted, badges, the top bar) at least 4.5:1
    against what is behind it, and is 'Skip to content' the first stop of the keyboard?"""
    page = new_page(browser, csp_violations, viewport={"width": 1280, "height": 800},
                    color_scheme="dark")
    sign_in(page, live_server, "admin.with.a.long.name@example.com")
    for path in ("/", "/jobs/", "/deployments/", "/libraries/images"):
        page.goto(live_server + path)
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background != "rgb(246, 247, 249)", "the dark scheme is not applied"
        assert page.evaluate(LOW_CONTRAST, [TEXT, 4.5]) == [], path
    expect(page.locator("progress").first).to_have_attribute(
        "aria-label", "Copying Images/Win11-23H2-Enterprise-x64.wim to Seattle: 42%")

    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("main#content")).to_be_focused()
    assert not csp_violations, csp_violations
