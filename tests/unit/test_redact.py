"""A credential of data.source: masked in the spec every layer sees, the real URL in this process's
environment only, read back by the readers; masked in errors, spec.yaml, report.html, preprocessor.json,
W&B configs; refused by `submit`. Signed URLs' signatures are masked like passwords."""
from __future__ import annotations

import base64
import functools
import http.server
import os
import threading

import pytest

from cluster.settings import redact_url
from tasks.errors import UserError
from tasks.spec import validate

SIGNED = {
    "s3 presigned": ("https://b.s3.amazonaws.com/x.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F1"
                     "&X-Amz-Expires=60&X-Amz-Signature=abc123&X-Amz-Security-Token=tok",
                     "https://b.s3.amazonaws.com/x.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***"
                     "&X-Amz-Expires=60&X-Amz-Signature=***&X-Amz-Security-Token=***"),
    "azure sas": ("https://a.blob.core.windows.net/c/x.csv?sv=2022-11-02&se=2030&sig=abc%3D",
                  "https://a.blob.core.windows.net/c/x.csv?sv=2022-11-02&se=2030&sig=***"),
    "gcs signed": ("https://storage.googleapis.com/b/x.csv?X-Goog-Signature=ab12&X-Goog-Date=1",
                   "https://storage.googleapis.com/b/x.csv?X-Goog-Signature=***&X-Goog-Date=1"),
    "cloudfront": ("https://d.cloudfront.net/x.csv?Expires=1&Signature=q~w&Key-Pair-Id=K",
                   "https://d.cloudfront.net/x.csv?Expires=1&Signature=***&Key-Pair-Id=K"),
}


@pytest.mark.parametrize("case", list(SIGNED))
def test_signed_urls_are_masked(case):
    url, want = SIGNED[case]
    assert redact_url(url) == want and redact_url(want) == want


def spec_of(source: str):
    return validate({"name": "t", "data": {"source": source, "target": "label"}, "model": {"name": "mlp"}})


def test_hide_source_keeps_the_credential_in_the_environment_only(monkeypatch):
    from tasks.data.sources import hide_source, real_source, source_env_var

    real = "s3://KEYID:SeCrEtKey@bucket/x.csv"
    spec = hide_source(spec_of(real))
    assert spec.data.source == "s3://KEYID:***@bucket/x.csv" and "SeCrEtKey" not in spec.model_dump_json()
    assert real_source(spec.data.source) == real == os.environ.pop(source_env_var(spec.data.source))
    plain = spec_of("data/x.csv")
    assert hide_source(plain) is plain and real_source("data/x.csv") == "data/x.csv"


def test_a_masked_source_without_its_credential_says_where_credentials_go():
    from tasks.data.sources import real_source

    with pytest.raises(UserError, match=r"data.source: 'https://h/x.csv\?token=\*\*\*' hides a credential.*environment"):
        real_source("https://h/x.csv?token=***")


def test_scrub_masks_a_credential_even_without_its_url():
    from tasks.data.sources import scrub

    src = "https://u:p%40ssWord1@h/x.csv"
    msg = scrub(f"401 for {src}; password p@ssWord1 / p%40ssWord1 refused", src)
    assert "ssWord1" not in msg and "https://u:***@h/x.csv" in msg


class _Basic(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_):
        pass

    def do_GET(self):
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"me:Pw0rdXyz").decode():
            return self.send_error(403)
        return super().do_GET()

    do_HEAD = do_GET


@pytest.fixture
def server(tmp_path):
    (tmp_path / "d.csv").write_text("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Basic, directory=str(tmp_path)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_a_hidden_source_is_read_with_its_credential_and_errors_name_it_masked(server):
    from tasks.data import read_table
    from tasks.data.sources import hide_source

    spec = hide_source(spec_of(f"http://me:Pw0rdXyz@{server}/d.csv"))
    assert spec.data.source == f"http://me:***@{server}/d.csv"
    assert len(read_table(spec.data.source).compute()) == 20
    missing = hide_source(spec_of(f"http://me:Pw0rdXyz@{server}/nope.csv"))
    with pytest.raises(UserError) as e:
        read_table(missing.data.source)
    assert "Pw0rdXyz" not in str(e.value) and f"http://me:***@{server}/nope.csv" in str(e.value)


def test_files_and_configs_show_the_source_masked(tmp_path):
    from tasks.data import Preprocessor
    from tasks.runs.register import masked
    from tasks.runs.report import report_html
    from tasks.tracking import redact

    spec = spec_of("https://h/x.csv?token=Tok3nValue")
    assert masked(spec).data.source == "https://h/x.csv?token=***"
    assert "Tok3nValue" not in report_html(spec, {}, [], {}, {})
    assert redact({"data": {"source": spec.data.source}, "l": ["postgresql://u:pw@h/db"]}) == \
        {"data": {"source": "https://h/x.csv?token=***"}, "l": ["postgresql://u:***@h/db"]}
    prep = Preprocessor(task="classification", target="label", features=[], numeric=[], categorical=[], columns=[],
                        sources=[], impute={}, source=spec.data.source)
    prep.save(tmp_path)
    assert "Tok3nValue" not in (tmp_path / "preprocessor.json").read_text()


@pytest.mark.parametrize("source", ["s3://K:S3cret@b/x.csv", "https://h/x.csv?X-Amz-Signature=abc", "s3://K:***@b/x.csv"])
def test_submit_refuses_a_credential_in_the_source(source):
    from flows.submit import refuse_credentials

    with pytest.raises(UserError, match="environment of the cluster's worker") as e:
        refuse_credentials(source)
    assert "S3cret" not in str(e.value) and "abc" not in str(e.value)
    refuse_credentials("s3://b/x.csv")
