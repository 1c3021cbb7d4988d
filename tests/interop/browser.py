"""A scripted browser for OAuth / OpenID Connect flows on loopback.

`Browser.authorize(url, stop_prefix)` walks an authorization URL through redirects and HTML
forms (an IdP's login and consent pages, moat's own pages) and returns the first URL that starts
with `stop_prefix`, the OAuth client's redirect URI, without requesting it.

Like a browser, and unlike a plain HTTP client:
- cookies are kept per host, not per port: two servers on 127.0.0.1 share the jar, so cookie names
  can collide (the OIDC fixture names its cookies `op_*` for that reason);
- `Secure` cookies are sent to http://127.0.0.1 and http://localhost (a loopback origin is a
  secure context); http.cookiejar refuses that by default;
- redirects after a POST become GETs (301, 302, 303); 307 and 308 repeat the method and body;
- a form POST carries an `Origin` header (the page's origin).
SameSite is not enforced: every loopback origin is the same site anyway (ports do not count).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from http.cookiejar import DefaultCookiePolicy
from typing import NoReturn
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import httpx2

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class BrowserError(AssertionError):
    """The browser got stuck; the message has the hop list and an excerpt of the last page.

    `why` is the short reason ("login refused: ...", "HTTP 400", ...), `status` the last page's
    HTTP status (None if there was no answer) and `text` its visible text.
    """

    def __init__(self, message: str, why: str = "", status: int | None = None, text: str = "") -> None:
        super().__init__(message)
        self.why = why or message
        self.status = status
        self.text = text


class LoopbackSecureCookiePolicy(DefaultCookiePolicy):
    """Sends `Secure` cookies over http to loopback hosts, as browsers do; elsewhere the default."""

    def return_ok_secure(self, cookie, request):  # type: ignore[no-untyped-def]
        host = (urlsplit(request.get_full_url()).hostname or "").lower()
        if cookie.secure and host in LOOPBACK_HOSTS:
            return True
        return super().return_ok_secure(cookie, request)


# ---------------------------------------------------------------- forms


@dataclass
class Field:
    tag: str  # input, select, textarea, button
    type: str  # input type ("text" for select/textarea, "submit"/"button"/"reset" for buttons)
    name: str
    value: str
    checked: bool = False
    options: list[tuple[str, bool]] = field(default_factory=list)  # select: (value, selected)


@dataclass
class Form:
    action: str
    method: str
    fields: list[Field] = field(default_factory=list)

    def submit_buttons(self) -> list[Field]:
        return [f for f in self.fields if f.type in ("submit", "image")]

    def is_login(self) -> bool:
        return any((f.tag == "input" and f.name == "login") or f.type == "password" for f in self.fields)


class _FormParser(HTMLParser):
    """Collects every <form> with its fields (stdlib only; good enough for server-rendered pages)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._select: Field | None = None
        self._option: list[str] | None = None  # value, selected, text parts
        self._textarea: Field | None = None
        self._button: Field | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {key.lower(): (value if value is not None else "") for key, value in attrs}
        if tag == "form":
            self._form = Form(action=a.get("action", ""), method=(a.get("method") or "get").lower())
            self.forms.append(self._form)
            return
        if self._form is None:
            return
        if tag == "input":
            kind = (a.get("type") or "text").lower()
            self._form.fields.append(
                Field(
                    "input",
                    kind,
                    a.get("name", ""),
                    a.get("value", "on" if kind in ("checkbox", "radio") else ""),
                    checked="checked" in a,
                )
            )
        elif tag == "button":
            self._button = Field("button", (a.get("type") or "submit").lower(), a.get("name", ""), a.get("value", ""))
            self._form.fields.append(self._button)
        elif tag == "select":
            self._select = Field("select", "select", a.get("name", ""), "")
            self._form.fields.append(self._select)
        elif tag == "option" and self._select is not None:
            self._option = [a["value"] if "value" in a else None, "selected" in a, ""]  # type: ignore[list-item]
            self._select.options.append(("", False))
        elif tag == "textarea":
            self._textarea = Field("textarea", "textarea", a.get("name", ""), "")
            self._form.fields.append(self._textarea)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._close_option()
            self._select = None
        elif tag == "option":
            self._close_option()
        elif tag == "textarea":
            self._textarea = None
        elif tag == "button":
            self._button = None

    def _close_option(self) -> None:
        if self._option is not None and self._select is not None:
            value, selected, text = self._option
            self._select.options[-1] = (value if value is not None else text.strip(), bool(selected))
        self._option = None

    def handle_data(self, data: str) -> None:
        if self._option is not None:
            self._option[2] += data
        elif self._textarea is not None:
            self._textarea.value += data


def parse_forms(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    return parser.forms


def page_text(html: str, limit: int = 400) -> str:
    """The visible text of a page, whitespace collapsed, cut to `limit` characters."""
    html = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", html)
    text = re.sub(r"<[^>]+>", " ", html)
    text = re.sub(r"\s+", " ", unescape(text)).strip()
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------- the browser


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _with_query(url: str, data: list[tuple[str, str]]) -> str:
    parts = urlsplit(url)
    query = urlencode(data)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


class Browser:
    """Cookies, manual redirects, HTML forms. Use as a context manager or call `close()`."""

    def __init__(self, timeout: float = 10.0, transport: httpx2.BaseTransport | None = None) -> None:
        """`transport` replaces the network (an `httpx2.MockTransport` in unit tests)."""
        self.http = httpx2.Client(
            transport=transport,
            follow_redirects=False,
            timeout=timeout,
            headers={
                "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                "User-Agent": "moat-interop-browser/1",
            },
        )
        # The client copies a jar it is given (and drops its policy): set the policy on its own jar.
        self.http.cookies.jar.set_policy(LoopbackSecureCookiePolicy())
        self.hops: list[tuple[str, str, int]] = []
        """(method, url, status) of every request made, in order, across calls."""
        self.last_response: httpx2.Response | None = None
        self._walk_start = 0

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    @property
    def cookies(self) -> httpx2.Cookies:
        return self.http.cookies

    # -------------------------------------------------------- single requests

    def get(self, url: str, headers: dict[str, str] | None = None) -> httpx2.Response:
        """One GET (no redirects followed), recorded in `hops`."""
        return self._request("GET", url, headers=headers)

    def post_form(
        self,
        url: str,
        data: dict[str, str] | list[tuple[str, str]],
        headers: dict[str, str] | None = None,
        origin: str | None = None,
    ) -> httpx2.Response:
        """One urlencoded POST (no redirects followed) with an Origin header, recorded in `hops`."""
        merged = {"Origin": origin or _origin(url), **(headers or {})}
        items = list(data.items()) if isinstance(data, dict) else list(data)
        return self._request("POST", url, data=items, headers=merged)

    def _request(
        self, method: str, url: str, data: list[tuple[str, str]] | None = None, headers: dict[str, str] | None = None
    ) -> httpx2.Response:
        kwargs: dict[str, object] = {"headers": headers or {}}
        if data is not None:
            kwargs["content"] = urlencode(data).encode()
            kwargs["headers"] = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        try:
            response = self.http.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx2.HTTPError as err:
            self.hops.append((method, url, 0))
            why = f"{method} {url} failed: {err!r}"
            raise BrowserError(f"{why}\n{self._hop_list(self._walk_start)}", why=why) from err
        self.hops.append((method, url, response.status_code))
        self.last_response = response
        return response

    # -------------------------------------------------------- the walk

    def authorize(
        self,
        url: str,
        stop_prefix: str,
        login: str | None = "alice",
        password: str = "pw",
        consent: str = "allow",
        choose: dict[str, str] | None = None,
        max_steps: int = 30,
    ) -> str:
        """Walks `url` until a redirect (or form target) starts with `stop_prefix`; returns that URL.

        The stop URL is never requested. On each HTML page the first <form> is submitted: hidden
        inputs as they are, `login`/`password` from the arguments, other fields from `choose`
        (name -> value), else their defaults; with several submit buttons, the one whose value
        (else name) equals `consent`. A form that posts to `stop_prefix` (response_mode=form_post)
        returns its action with the fields as the query. `login=None` means no login form is
        expected: one raises. A login form that comes back right after a login was submitted
        raises too (the login was refused).
        """
        choose = dict(choose or {})
        self._walk_start = len(self.hops)
        method, target, data, origin = "GET", url, None, None
        submitted_login = False
        for _ in range(max_steps):
            if target.startswith(stop_prefix):
                return target if data is None else _with_query(target, data)
            if method == "POST":
                response = self.post_form(target, data or [], origin=origin)
            else:
                response = self.get(target if data is None else _with_query(target, data))
            page_url = str(response.url)

            if response.is_redirect:
                location = response.headers["location"]
                keep = response.status_code in (307, 308) and method == "POST"
                method, target = ("POST", urljoin(page_url, location)) if keep else ("GET", urljoin(page_url, location))
                if not keep:
                    data = None
                continue

            if response.status_code >= 400:
                self._stuck(f"HTTP {response.status_code}", response)
            if response.status_code != 200:
                self._stuck(f"unexpected HTTP {response.status_code}", response)
            kind = response.headers.get("content-type", "")
            if "html" not in kind:
                self._stuck(f"not an HTML page ({kind or 'no content-type'})", response)
            forms = parse_forms(response.text)
            if not forms:
                self._stuck("no <form> on the page", response)
            form = forms[0]

            if form.is_login():
                if login is None:
                    self._stuck("a login form was shown, but login=None", response)
                if submitted_login:
                    self._stuck("login refused: the login form came back", response)
            method, target, data = self._fill(form, page_url, response, login, password, consent, choose)
            origin = _origin(page_url)
            submitted_login = form.is_login()
        why = f"no redirect to {stop_prefix} within {max_steps} steps"
        last = self.last_response
        raise BrowserError(
            f"browser stuck: {why}\n{self._details(last)}",
            why=why,
            status=last.status_code if last is not None else None,
            text=page_text(last.text, 2000) if last is not None else "",
        )

    def _fill(
        self,
        form: Form,
        page_url: str,
        response: httpx2.Response,
        login: str | None,
        password: str,
        consent: str,
        choose: dict[str, str],
    ) -> tuple[str, str, list[tuple[str, str]]]:
        data: list[tuple[str, str]] = []
        radios_done: set[str] = set()
        for f in form.fields:
            if not f.name or f.type in ("submit", "image", "button", "reset", "file"):
                continue
            if f.tag == "select":
                chosen = choose.get(f.name)
                values = [value for value, _ in f.options]
                if chosen is not None:
                    if chosen not in values:
                        self._stuck(f"select {f.name!r} has no option {chosen!r} (options: {values})", response)
                    data.append((f.name, chosen))
                else:
                    selected = [value for value, sel in f.options if sel] or values[:1]
                    data.extend((f.name, value) for value in selected[:1])
            elif f.type == "radio":
                if f.name in radios_done:
                    continue
                group = [r for r in form.fields if r.type == "radio" and r.name == f.name]
                chosen = choose.get(f.name)
                if chosen is not None:
                    if chosen not in [r.value for r in group]:
                        self._stuck(f"radio {f.name!r} has no value {chosen!r}", response)
                    data.append((f.name, chosen))
                else:
                    data.extend((f.name, r.value) for r in group if r.checked)
                radios_done.add(f.name)
            elif f.type == "checkbox":
                chosen = choose.get(f.name)
                if chosen is not None:
                    if chosen not in ("", "off", "false"):
                        data.append((f.name, f.value if chosen in ("on", "true") else chosen))
                elif f.checked:
                    data.append((f.name, f.value))
            elif f.type == "hidden":
                data.append((f.name, f.value))
            elif f.type == "password":
                data.append((f.name, password))
            elif f.name == "login" and login is not None:
                data.append((f.name, login))
            else:
                data.append((f.name, choose.get(f.name, f.value)))

        buttons = form.submit_buttons()
        if len(buttons) > 1:
            matching = [b for b in buttons if b.value == consent] or [b for b in buttons if b.name == consent]
            if not matching:
                offered = [(b.name, b.value) for b in buttons]
                self._stuck(f"no submit button matches consent={consent!r} (buttons: {offered})", response)
            buttons = matching[:1]
        if buttons and buttons[0].name:
            data.append((buttons[0].name, buttons[0].value))

        action = urljoin(page_url, form.action) if form.action else page_url
        return ("POST" if form.method == "post" else "GET"), action, data

    # -------------------------------------------------------- errors

    def _hop_list(self, start: int = 0) -> str:
        return "hops:\n" + "\n".join(f"  {m} {u} -> {s}" for m, u, s in self.hops[start:])

    def _details(self, response: httpx2.Response | None) -> str:
        start = self._walk_start
        if response is None:
            return self._hop_list(start)
        return (
            f"{self._hop_list(start)}\nlast page: HTTP {response.status_code} {response.url} "
            f"({response.headers.get('content-type', '')})\n  {page_text(response.text)}"
        )

    def _stuck(self, why: str, response: httpx2.Response) -> NoReturn:
        raise BrowserError(
            f"browser stuck: {why}\n{self._details(response)}",
            why=why,
            status=response.status_code,
            text=page_text(response.text, 2000),
        )
