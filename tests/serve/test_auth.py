"""Access beyond loopback: ``covidlens serve`` refuses a public address without ``--token-file`` or
``--no-auth``; with a token, a request without it or with a wrong one gets 401 before its body is read,
before the pool admits it and before any model runs; with ``--no-auth`` the log and the page say so.
No test binds anything but 127.0.0.1: uvicorn's ``Server.run`` is replaced where a public host is named."""

from __future__ import annotations

import socket
from collections import Counter

import httpx
import pytest
import uvicorn

from covidlens.cli import main
from covidlens.serve import app as app_module
from covidlens.serve import pipeline
from covidlens.serve.server import is_loopback
from tests.serve.conftest import CT_DICOM, CT_PNG
from tests.serve.test_browser import browser  # noqa: F401  (the Chromium fixture)

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

TOKEN = "s3cret-token-of-32-characters-xy"


@pytest.fixture()
def no_bind(monkeypatch):
    """uvicorn never listens: the apps ``run_server`` would serve are kept here instead."""
    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, *a, **k: served.append(server.config.app))
    return served


@pytest.fixture()
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.0.1", "::1", "localhost", "LocalHost"])
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "fe80::1", "scanner.hospital.example"])
def test_hosts_beyond_loopback(host):
    assert not is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_a_public_host_without_token_or_no_auth_is_refused_in_one_sentence(host, checkpoints, no_bind, capsys):
    assert main(["serve", "--ct-checkpoint", str(checkpoints["ct"]), "--host", host]) == 2
    err = capsys.readouterr().err
    assert err == (f"covidlens: error: --host {host} lets other machines use this server, so give --token-file FILE "
                   "with a secret token, or --no-auth to serve without authentication anyway.\n")
    assert no_bind == []


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "cannot read the token file {path} (No such file or directory)"),
        ("", "the token file {path} is empty; write a token of at least 16 characters into it"),
        (" \n\n", "the token file {path} is empty"),
        ("fifteen-chars!!\n", "the token in {path} has 15 characters, fewer than the 16 required"),
        ("two words of a long token", "the token in {path} must be one line of printable ASCII without spaces"),
        (b"\xff\xfe" + b"x" * 20, "cannot read the token file {path} (it is not UTF-8 text)"),
        ("directory", "cannot read the token file {path} (Is a directory)"),
    ],
)
def test_a_bad_token_file_is_refused_in_one_sentence(content, message, checkpoints, tmp_path, no_bind, capsys):
    path = tmp_path / "token"
    if content == "directory":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert main(["serve", "--ct-checkpoint", str(checkpoints["ct"]), "--host", "0.0.0.0", "--token-file",
                 str(path)]) == 2
    err = capsys.readouterr().err
    assert message.format(path=path) in err and err.count("\n") == 1 and "Traceback" not in err
    assert no_bind == []


def test_token_file_and_no_auth_exclude_each_other(token_file, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["serve", "--token-file", str(token_file), "--no-auth"])
    assert stop.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_token_file_serves_a_public_host_with_the_token(checkpoints, token_file, no_bind, capsys):
    assert main(["serve", "--ct-checkpoint", str(checkpoints["ct"]), "--host", "0.0.0.0", "--token-file",
                 str(token_file)]) == 0
    config = no_bind[0].state.config
    assert config.token == TOKEN and config.unauthenticated_host is None  # read without its newline
    assert TOKEN not in repr(config)


def test_no_auth_is_stated_in_the_log_and_on_the_page(checkpoints, no_bind, caplog):
    from fastapi.testclient import TestClient

    assert main(["serve", "--ct-checkpoint", str(checkpoints["ct"]), "--host", "0.0.0.0", "--no-auth"]) == 0
    caplog.set_level("INFO", logger="covidlens.serve")
    with TestClient(no_bind[0]) as client:  # the lifespan logs at start
        config = client.get("/config").json()
        assert client.post("/v1/predict").status_code != 401
    warning = ("This service has no authentication and listens on 0.0.0.0: anyone who can reach that address can "
               "send scans to it and read the results.")
    assert config == {"auth_required": False, "warning": warning}
    assert [r.getMessage() for r in caplog.records if r.name == "covidlens.serve" and r.levelname == "WARNING"] \
        == [warning]


class ModelWork:
    """Counts what requests set in motion: upload reads, every job function and, once watched, pool admissions."""

    def __init__(self, monkeypatch):
        self.calls: Counter[str] = Counter()
        self._monkeypatch = monkeypatch
        real_receive = app_module.receive_upload

        async def receive_upload(*args, **kwargs):
            self.calls["receive_upload"] += 1
            return await real_receive(*args, **kwargs)

        monkeypatch.setattr(app_module, "receive_upload", receive_upload)
        for name in ("predict_job", "predict_many", "explain_job", "segment_job", "quantify_job"):
            monkeypatch.setattr(pipeline, name, self._counting(name, getattr(pipeline, name)))

    def _counting(self, name, real):
        def counted(*args, **kwargs):
            self.calls[name] += 1
            return real(*args, **kwargs)
        return counted

    def watch(self, pool) -> None:
        self._monkeypatch.setattr(pool, "admit", self._counting("admit", pool.admit))


@pytest.fixture()
def model_work(monkeypatch) -> ModelWork:
    return ModelWork(monkeypatch)


UPLOAD_ENDPOINTS = ["/v1/screen", "/v1/predict", "/v1/explain", "/v1/segment", "/v1/quantify"]
BAD_HEADERS = {
    "missing_token": {},
    "invalid_token": {"Authorization": "Bearer wrong-token-of-32-characters-xyz"},
}
ALSO_WRONG = [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer "]


def _refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["api_version"] == "1" and body["error"]["code"] == code
    assert "'Authorization: Bearer <token>'" in body["error"]["message"]


def test_without_the_right_token_no_model_work_is_done(client_for, ct_models, real, model_work):
    client = client_for(ct_models, token=TOKEN)
    model_work.watch(client.app.state.pool)
    scan = {"file": ("slice.png", real(CT_PNG), "image/png")}
    for path in UPLOAD_ENDPOINTS:
        for code, headers in BAD_HEADERS.items():
            _refused(client.post(path, files=scan, headers=headers), code)
        for header in ALSO_WRONG:
            _refused(client.post(path, files=scan, headers={"Authorization": header}), "invalid_token")
    for code, headers in BAD_HEADERS.items():
        _refused(client.get("/v1/models", headers=headers), code)
        _refused(client.get("/v1/no-such-endpoint", headers=headers), code)  # closed unless opened on purpose
    assert model_work.calls == {}

    good = client.post("/v1/predict", files=scan, headers={"Authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200, good.text
    assert good.json()["decision"] in ("COVID", "NonCOVID")
    assert model_work.calls["admit"] == 1 and model_work.calls["receive_upload"] == 1  # the counters see real work
    assert client.get("/v1/models", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_the_page_and_health_checks_stay_open(client_for, ct_models):
    client = client_for(ct_models, token=TOKEN)
    for path in ("/", "/static/app.js", "/static/app.css", "/healthz", "/readyz", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    assert client.get("/config").json() == {"auth_required": True, "warning": None}
    assert "401" in client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["responses"]


def test_a_real_server_refuses_before_reading_the_body(live_server, ct_models, real, model_work):
    server = live_server(ct_models, token=TOKEN, workers=1, queue_size=0)
    model_work.watch(server.app.state.pool)
    boundary = "cut"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'.encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        # 100 MB announced, a few bytes sent: an answer can only come if the body is not waited for
        raw.sendall(
            f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}"
            f"\r\nContent-Length: {100 << 20}\r\n\r\n".encode() + head + b"\x89PNG"
        )
        answer = b""
        while b"missing_token" not in answer:
            chunk = raw.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401 ") and b"\r\nwww-authenticate: bearer\r\n" in answer.lower()
    assert model_work.calls == {}

    good = httpx.post(f"{server.url}/v1/predict", files={"file": ("scan.png", real(CT_PNG), "image/png")},
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert good.status_code == 200, good.text  # queue 0: a slot taken by the refusal would make this 503


def test_the_page_asks_for_the_token_once_and_says_when_it_is_refused(browser, live_server, ct_models,  # noqa: F811
                                                                      data_root):
    server = live_server(ct_models, token=TOKEN)
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#token-form:not([hidden])")
    assert page.evaluate("document.activeElement.id") == "token-input"
    assert page.is_hidden("#exposure-warning")

    page.fill("#token-input", "wrong-token-of-32-characters-xyz")
    page.click("#token-submit")
    page.wait_for_selector("#error:not([hidden])")
    assert "did not accept the access token" in page.inner_text("#error")
    assert page.is_visible("#token-form")

    page.fill("#token-input", TOKEN)
    page.click("#token-submit")
    page.wait_for_selector("#lesion-field:not([hidden])", state="attached")  # the model list came with the token
    assert page.is_hidden("#token-form") and page.is_hidden("#error")
    page.set_input_files("#file-input", str(data_root / CT_DICOM))
    page.click("#submit")
    page.wait_for_selector("#status:has-text('Done')", timeout=60_000)

    page.reload()  # the tab keeps the token: not asked again
    page.wait_for_selector("#lesion-field:not([hidden])", state="attached")
    assert page.is_hidden("#token-form")
    page.close()


def test_the_page_warns_when_it_has_no_authentication_beyond_loopback(browser, live_server,  # noqa: F811
                                                                       ct_models):
    server = live_server(ct_models, unauthenticated_host="0.0.0.0")
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#exposure-warning:not([hidden])")
    assert page.inner_text("#exposure-warning").startswith(
        "This service has no authentication and listens on 0.0.0.0: anyone who can reach that address")
    page.wait_for_selector("#lesion-field:not([hidden])", state="attached")
    assert page.is_hidden("#token-form")
    page.close()
