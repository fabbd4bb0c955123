"""The web layer under the blueprints, shared by the console, the API and the agent API.

- `views`: what every view uses: reading the request (page numbers, JSON bodies, bearer tokens,
  form errors) and answering it (the page or its fragment, where to go after a change);
- `auth`: who is asking (the signed-in person, a token's owner) as services want it;
- `errors`: every error as JSON for programs, a page or a flash for people;
- `context`: what every console page's layout needs, the lists of statuses, the filters;
- `fields`: form fields the console's forms share (repeated inputs, ids, numbered slots);
- `proxies`: which X-Forwarded-* headers to believe behind a reverse proxy, secure cookies;
- `bodies`: how large (DEPOT_MAX_BODY_MB) and how deep a request's body may be.
- `headers`: the security headers (CSP, no framing, nosniff, no-store) on every answer.

The errors themselves are the one family in `portal.core.errors`.
"""


def init_app(app) -> None:
    """Proxies, body limits, sign-in, the error handlers, the layout's context and the security
    headers."""
    from portal.web import auth, bodies, context, errors, headers, proxies

    proxies.init_app(app)
    bodies.init_app(app)
    headers.init_app(app)
    auth.init_app(app)
    errors.init_app(app)
    context.init_app(app)
