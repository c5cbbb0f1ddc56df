"""results_schema.samples: per-request samples of k6 CSV, ghz JSON details and vegeta CSV, written by
hand in the tools' documented formats."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from orchbench.core.errors import ParseError
from results_schema.samples import COLUMNS, detect_tool, embedded_samples, load_samples

K6_HEADER = (
    "metric_name,timestamp,metric_value,check,error,error_code,expected_response,group,method,name,proto,"
    "scenario,service,status,subproto,tls_version,url,extra_tags,metadata"
)
URL = "http://127.0.0.1:9000/v1/models/flowers:predict"


def k6_row(
    metric: str,
    ts: int,
    value: float,
    scenario: str,
    status: str = "200",
    vu: int = 1,
    it: int = 0,
    check: str = "",
    expected: str = "true",
    error: str = "",
) -> str:
    if metric == "checks":
        return f"checks,{ts},{value:.6f},{check},,,,,,,,{scenario},,,,,,,vu={vu}&iter={it}"
    return (
        f"{metric},{ts},{value:.6f},,{error},,{expected},,POST,{URL},HTTP/1.1,{scenario},,{status},,,"
        f"{URL},,iter={it}&vu={vu}"
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_k6_csv_phases_checks_and_start_times(tmp_path: Path) -> None:
    t0 = 1_700_000_000_000_000_000
    rows = [
        K6_HEADER,
        k6_row("http_reqs", t0 + 1_000_000, 1, "warmup"),
        k6_row("http_req_duration", t0 + 1_000_000, 0.5, "warmup", it=0),
        k6_row("checks", t0 + 1_100_000, 1, "warmup", check="ok", it=0),
        k6_row("http_req_duration", t0 + 3_000_000, 1.25, "measure", it=1),
        k6_row("checks", t0 + 3_100_000, 1, "measure", check="ok", it=1),
        # answered 200 but the body failed the check: not ok
        k6_row("http_req_duration", t0 + 5_000_000, 0.75, "measure", it=2),
        k6_row("checks", t0 + 5_100_000, 0, "measure", check="ok", it=2),
        k6_row("http_req_duration", t0 + 7_000_000, 2.0, "measure", status="503", expected="false", it=3),
        k6_row("checks", t0 + 7_100_000, 0, "measure", check="ok", it=3),
        k6_row(
            "http_req_duration",
            t0 + 9_000_000,
            0.0,
            "measure",
            status="0",
            expected="false",
            it=4,
            error="dial: connection refused",
        ),
        k6_row("checks", t0 + 9_100_000, 0, "measure", check="ok", it=4),
    ]
    df = load_samples(write(tmp_path, "s.csv", "\n".join(rows) + "\n"))
    assert list(df.columns) == COLUMNS
    assert df.attrs["checks"] == "joined"
    assert [str(t) for t in df.dtypes[["seq", "ts_ns", "latency_ns"]]] == ["int64"] * 3
    assert df["seq"].tolist() == [0, 1, 2, 3, 4]
    assert df["phase"].tolist() == ["warmup"] + ["measure"] * 4
    assert df["latency_ns"].tolist() == [500_000, 1_250_000, 750_000, 2_000_000, 0]
    # k6 stamps at the end of the request: start = end - duration
    assert df["ts_ns"].tolist()[:2] == [t0 + 500_000, t0 + 1_750_000]
    assert df["status"].tolist() == ["200", "200", "200", "503", "0"]
    assert df["ok"].tolist() == [True, True, False, False, False]
    assert df["error"].tolist()[-1] == "dial: connection refused"
    measure = load_samples(tmp_path / "s.csv", measure_only=True)
    assert measure["seq"].tolist() == [0, 1, 2, 3] and set(measure["phase"]) == {"measure"}


def test_k6_csv_grpc_codes_and_connect_errors(tmp_path: Path) -> None:
    t0 = 1_700_000_000_000_000_000
    grpc_row = (
        "grpc_req_duration,{ts},{v},,,,,,Predict,/tensorflow.serving.PredictionService/Predict,,measure,"
        "tensorflow.serving.PredictionService,{code},,,127.0.0.1:9000/x,,vu=1&iter={it}"
    )
    rows = [
        K6_HEADER,
        grpc_row.format(ts=t0 + 10_000_000, v="1.5", code="0", it=0),
        k6_row("checks", t0 + 10_100_000, 1, "measure", check="ok", it=0),
        grpc_row.format(ts=t0 + 20_000_000, v="0.5", code="14", it=1),
        k6_row("checks", t0 + 20_100_000, 0, "measure", check="ok", it=1),
        f'orchbench_connect_errors,{t0 + 30_000_000},1.000000,,"GoError: connection refused",'
        ",,,,,,measure,,,,,,,vu=1&iter=2",
    ]
    df = load_samples(write(tmp_path, "g.csv", "\n".join(rows) + "\n"), "k6")
    assert df["status"].tolist() == ["OK", "Unavailable", "0"]
    assert df["ok"].tolist() == [True, False, False]
    assert df.attrs["checks"] == "joined"  # the connect error has no check; it is not ok anyway


def test_k6_csv_without_vu_iter_falls_back_to_status(tmp_path: Path) -> None:
    rows = [
        "metric_name,timestamp,metric_value,check,error,error_code,group,method,name,proto,scenario,status,"
        "subproto,tls_version,url,extra_tags",
        "http_req_duration,1595325560,221.899000,,,,,GET,http://test.k6.io,HTTP/1.1,default,200,,,http://test.k6.io,",
        "checks,1595325560,0.000000,is ok,,,,,,,default,,,,,",
        "http_req_duration,1595325561,100.000000,,,,,GET,http://test.k6.io,HTTP/1.1,default,503,,,http://test.k6.io,",
    ]
    df = load_samples(write(tmp_path, "doc.csv", "\n".join(rows) + "\n"), "k6")
    assert df.attrs["checks"] == "status"
    assert df.attrs["timestamp_resolution_ns"] == 1_000_000_000  # the default timeFormat: whole seconds
    assert df["ok"].tolist() == [True, False]
    assert df["phase"].tolist() == ["measure", "measure"]  # scenario "default" is not warm-up
    assert df["latency_ns"].tolist() == [221_899_000, 100_000_000]


def test_ghz_details(tmp_path: Path) -> None:
    report = {
        "count": 3,
        "average": 2_000_000,
        "details": [
            {"timestamp": "2020-07-12T17:12:04.000002Z", "latency": 2_000, "error": "", "status": "OK"},
            {"timestamp": "2020-07-12T17:12:04.000010Z", "latency": 3_000, "error": "", "status": "OK"},
            {
                "timestamp": "2020-07-12T17:12:04.000020Z",
                "latency": 1_000,
                "error": "rpc error: code = Unavailable desc = transport is closing",
                "status": "Unavailable",
            },
        ],
    }
    path = write(tmp_path, "ghz.json", json.dumps(report))
    assert detect_tool(path) == "ghz"
    df = load_samples(path)
    base = 1594573924 * 10**9
    assert df["ts_ns"].tolist() == [base, base + 7_000, base + 19_000]  # end - latency
    assert df["status"].tolist() == ["OK", "OK", "Unavailable"]
    assert df["ok"].tolist() == [True, True, False]
    embedded = embedded_samples(path)
    assert embedded is not None and embedded["latency_ns"].tolist() == [2_000, 3_000, 1_000]
    assert embedded_samples(write(tmp_path, "no-details.json", json.dumps({"count": 1}))) is None


def test_vegeta_csv_with_body_check(tmp_path: Path) -> None:
    good = base64.b64encode(b'{"predictions":[{"scores":[0.1,0.9],"key":"1"}]}').decode()
    bad = base64.b64encode(b'{"error":"boom"}').decode()
    hdr = base64.b64encode(b"Content-Type: application/json").decode()
    rows = [
        f"1594569595298435559,200,82639171,16175,218,,{good},measure,0,POST,{URL},{hdr}",
        f"1594569595381074730,200,79832732,16175,218,,{bad},measure,1,POST,{URL},{hdr}",
        f"1594569595460907462,503,1000000,16175,0,,,measure,2,POST,{URL},{hdr}",
        f'1594569595461907462,0,500000,0,0,"Post ""{URL}"": dial tcp: connection refused",'
        f",measure,3,POST,{URL},",
    ]
    path = write(tmp_path, "v.csv", "\n".join(rows) + "\n")
    assert detect_tool(path) == "vegeta"
    df = load_samples(path)
    assert df.attrs["checks"] == "body"
    assert df["ts_ns"].tolist()[0] == 1594569595298435559  # vegeta stamps the request start
    assert df["status"].tolist() == ["200", "200", "503", "0"]
    assert df["ok"].tolist() == [True, False, False, False]
    assert "connection refused" in df["error"].tolist()[3]


@pytest.mark.parametrize(
    ("name", "text", "tool"),
    [
        ("empty.csv", "", "k6"),
        ("nohdr.csv", "foo,bar\n1,2\n", "k6"),
        (
            "badval.csv",
            K6_HEADER + "\n" + k6_row("http_req_duration", 1, 1.0, "measure").replace("1.000000", "x") + "\n",
            "k6",
        ),
        (
            "badts.csv",
            K6_HEADER
            + "\n"
            + k6_row("http_req_duration", 1, 1.0, "measure").replace(",1,", ",yesterday,", 1)
            + "\n",
            "k6",
        ),
        ("short.csv", "1594569595298435559,200,82639171\n", "vegeta"),
        ("nonint.csv", "1594569595298435559,OK,82639171,1,1,\n", "vegeta"),
        ("notjson.json", "{ nope", "ghz"),
        ("nodetails.json", '{"count": 1}', "ghz"),
        ("badlat.json", '{"details": [{"timestamp": "2020-07-12T17:12:04Z", "latency": "fast"}]}', "ghz"),
        ("badtime.json", '{"details": [{"timestamp": "noon", "latency": 5}]}', "ghz"),
        ("binary.csv", "\x00\x01\x02", None),
    ],
)
def test_malformed_input_is_a_parse_error_naming_the_file(
    tmp_path: Path, name: str, text: str, tool: str | None
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(ParseError) as info:
        load_samples(path, tool)  # type: ignore[arg-type]
    assert info.value.path == str(path)
