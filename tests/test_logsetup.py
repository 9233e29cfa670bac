"""Logging set-up: every line in the chosen format, even for exceptions nobody caught."""

import threading

import orjson

from exporter.logsetup import configure_logging


def test_an_uncaught_exception_in_a_thread_is_one_json_line_without_its_message(tmp_path, capfd):
    log_file = tmp_path / "bridge.log"
    configure_logging("info", "json", str(log_file))

    def crash():
        raise ConnectionResetError("http://api/?token=s3cr3t reset")

    thread = threading.Thread(target=crash, name="poll-x")
    thread.start()
    thread.join()
    lines = [orjson.loads(line) for line in log_file.read_text().splitlines()]
    assert [(line["level"], line["msg"].split(" at ")[0]) for line in lines] == [
        ("ERROR", "thread poll-x stopped by an uncaught ConnectionResetError")
    ]
    err = capfd.readouterr().err
    assert "Traceback" not in err and "s3cr3t" not in err and "s3cr3t" not in log_file.read_text()
