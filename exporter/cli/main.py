"""Entry point of ``error-exporter`` (and ``python -m exporter``).

Exit codes: 0 ok; 1 the operation failed (nothing listening at the URL, 401, a server
error, a file that cannot be written); 2 usage or configuration error (bad arguments or a
filter value the server refuses with 400, a configuration with problems, an input file
that is missing or not an export). Every
message names the URL or file and the cause; no command ends with a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence

from exporter.cli.client import (
    CA_FILE_ENV,
    CERT_FILE_ENV,
    KEY_FILE_ENV,
    PASSWORD_FILE_ENV,
    TOKEN_ENV,
    URL_ENV,
    USER_ENV,
    AccessError,
    ApiClient,
    ApiError,
    HttpStatusError,
    access_from_args,
)
from exporter.release import monitor_version

EPILOG = """exit codes: 0 ok, 1 the operation failed (connection refused, 401, server error),
2 usage or configuration error (bad options or filter values, invalid config, missing file,
not an export file), 3 partial fleet view (--prometheus: some targets failed, the rest merged).
environment: ERROR_EXPORTER_URL (default --url), ERROR_EXPORTER_API_TOKEN (default --token),
ERROR_EXPORTER_CA_FILE, ERROR_EXPORTER_CLIENT_CERT_FILE, ERROR_EXPORTER_CLIENT_KEY_FILE,
ERROR_EXPORTER_BASIC_AUTH_USER, ERROR_EXPORTER_BASIC_AUTH_PASSWORD_FILE (TLS and basic auth),
ERROR_EXPORTER_WEB_CONFIG_FILE (default --web.config.file)."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be 1..65535, got {text}")
    return value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TIME_FORMS = (
    "a time ago: 30s, 15m, 2h or 1d; epoch seconds: 1700000000; or an ISO-8601 "
    "date-time: 2024-05-01T12:00:00+00:00 (no offset: local time)"
)


def _time_arg(text: str) -> str:
    """'15m', '2h', '1d' ago as epoch seconds; epoch seconds and ISO 8601 as given (the server
    reads them the same way). Anything else is refused here, before asking the server."""
    from exporter.http.params import parse_time

    value = text.strip()
    if len(value) > 1 and value[-1] in _UNITS:
        try:
            amount = float(value[:-1])
        except ValueError:
            amount = -1.0
        if amount >= 0 and amount == amount and amount != float("inf"):
            return f"{time.time() - amount * _UNITS[value[-1]]:.3f}"
    elif parse_time(value) is not None:
        return value
    raise argparse.ArgumentTypeError(f"{text!r} is not a time; use {TIME_FORMS}")


def _add_api_options(parser: argparse.ArgumentParser, url: bool = True) -> None:
    if url:
        parser.add_argument(
            "--url", help=f"the app's API (default ${URL_ENV} or http://127.0.0.1:9718)"
        )
    parser.add_argument("--token", help=f"bearer token for the API (default ${TOKEN_ENV})")


def _no_password_here(text: str) -> str:
    raise argparse.ArgumentTypeError(
        "a password on the command line is visible to every user of the machine; put it in "
        f"a file: --basic-auth-password-file FILE (or ${PASSWORD_FILE_ENV})"
    )


def _add_access_options(parser: argparse.ArgumentParser) -> None:
    """How the client reaches a monitor behind TLS and basic auth (its web config file).

    No option takes a password: the command line is visible to every user of the machine.
    """
    group = parser.add_argument_group("TLS and basic auth (a server with a web config file)")
    group.add_argument(
        "--ca-file",
        metavar="FILE",
        help="CA certificate(s) that signed the "
        f"server's certificate (default ${CA_FILE_ENV}, else the system's CAs)",
    )
    group.add_argument(
        "--cert-file",
        metavar="FILE",
        help=f"client certificate for mutual TLS (default ${CERT_FILE_ENV})",
    )
    group.add_argument(
        "--key-file", metavar="FILE", help=f"its private key (default ${KEY_FILE_ENV})"
    )
    group.add_argument(
        "--basic-auth-user", metavar="USER", help=f"basic auth user (default ${USER_ENV})"
    )
    group.add_argument(
        "--basic-auth-password-file",
        metavar="FILE",
        help=f"file holding the basic auth password (default ${PASSWORD_FILE_ENV})",
    )
    # refused by name, so that it is not taken as an abbreviation of the option above (which
    # would treat the password as a file name and show it in the error)
    group.add_argument("--basic-auth-password", type=_no_password_here, help=argparse.SUPPRESS)


def _add_web_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="web config file of the exporter-toolkit (TLS, client "
        "certificates, basic auth); default $ERROR_EXPORTER_WEB_CONFIG_FILE",
    )


def _add_fleet_options(
    parser: argparse.ArgumentParser, source: argparse._ActionsContainer, what: str
) -> None:
    source.add_argument(
        "--prometheus",
        metavar="URL",
        help=f"{what} every active target of --job that this Prometheus "
        "scrapes, merged (exit 3 when some targets fail)",
    )
    parser.add_argument("--job", help="with --prometheus: the scrape job (default error-exporter)")
    parser.add_argument(
        "--target-timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="with --prometheus: time allowed per target (default 10)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="error-exporter",
        description="In-process error monitor for Python apps: demo, live view, analysis, "
        "export and configuration check.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"error-exporter {monitor_version()} (Python {sys.version.split()[0]})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="run a synthetic app with the monitor and a live view")
    demo.add_argument("--host", help="bind address (default 127.0.0.1)")
    demo.add_argument("--port", type=_port, help="port (default 9718)")
    demo.add_argument("--rate", type=_positive_float, default=5.0, help="errors per second")
    demo.add_argument(
        "--duration",
        type=_positive_float,
        metavar="SECONDS",
        help="stop after this many seconds (default: until Ctrl-C)",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed of the workload")
    demo.add_argument(
        "--storm",
        action="store_true",
        help="a sustained storm of critical errors for the whole run",
    )
    demo.add_argument(
        "--storm-every",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="seconds between error storms (default 30)",
    )
    demo.add_argument(
        "--deploy-after",
        type=_positive_float,
        default=75.0,
        metavar="SECONDS",
        help="seconds until the app deploys its next version: a new error and "
        "a regression (default 75)",
    )
    demo.add_argument("--no-live", action="store_true", help="no live view; print errors")
    demo.add_argument("--config", metavar="FILE", help="YAML configuration of the monitor")
    _add_web_config_option(demo)
    demo.add_argument(
        "--store-url",
        metavar="URL",
        help="write the reports to a shared store (postgresql://...; default: "
        "ERROR_EXPORTER_STORE_URL, else memory only)",
    )
    _add_api_options(demo, url=False)
    _add_access_options(demo)

    watch = sub.add_parser("watch", help="live view of a running app")
    _add_api_options(watch)
    _add_access_options(watch)
    watch.add_argument("--refresh", type=_positive_float, default=2.0, metavar="SECONDS")
    watch.add_argument("--no-rich", action="store_true", help="plain lines, one per refresh")
    watch.add_argument(
        "--iterations", type=_positive_int, metavar="N", help="stop after N refreshes"
    )

    analyze = sub.add_parser("analyze", help="comprehensive report of a running app or an export")
    source = analyze.add_mutually_exclusive_group()
    source.add_argument(
        "--url", help=f"the app's API (default ${URL_ENV} or http://127.0.0.1:9718)"
    )
    source.add_argument("--file", metavar="EXPORT.json", help="an export file instead")
    source.add_argument(
        "--store",
        metavar="FILE|URL",
        help="a durable store instead: a "
        "file (store_path) or a store_url (postgresql://..., sqlite:///...), "
        "read offline (also while its apps run)",
    )
    analyze.add_argument(
        "--app", help="with --store: only this app's groups (default: every app in the store)"
    )
    analyze.add_argument("--token", help=f"bearer token for the API (default ${TOKEN_ENV})")
    analyze.add_argument("--json", action="store_true", help="print the analysis as JSON")
    _add_access_options(analyze)
    _add_fleet_options(analyze, source, "analyze")

    export = sub.add_parser("export", help="write the JSON export of a running app")
    _add_api_options(export)
    export.add_argument("-o", "--output", required=True, metavar="FILE")
    _add_access_options(export)
    export.add_argument(
        "--store",
        metavar="FILE|URL",
        help="read a durable store offline "
        "instead of the app's API: a file (store_path) or a store_url "
        "(postgresql://..., sqlite:///...)",
    )
    export.add_argument(
        "--app", help="with --store: only this app's groups (default: every app in the store)"
    )
    export.add_argument(
        "--since",
        type=_time_arg,
        metavar="TIME",
        help=f"only errors at or after TIME: {TIME_FORMS}",
    )
    export.add_argument(
        "--until", type=_time_arg, metavar="TIME", help="only errors at or before TIME (same forms)"
    )
    export.add_argument("--severity", choices=("low", "medium", "high", "critical"))
    export.add_argument("--component")
    export.add_argument("--plugin")
    export.add_argument("--error-type")
    export.add_argument("--limit", type=_positive_int, help="at most this many records")
    export.add_argument(
        "--page-size",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="records per API request (default 1000)",
    )
    _add_fleet_options(export, export, "export")

    resolve = sub.add_parser(
        "resolve",
        help="mark an error group resolved (seen again, it "
        "is a regression); needs the server's api_token",
    )
    resolve.add_argument("error_id", metavar="ID", help="the group's error_id")
    _add_api_options(resolve)
    resolve.add_argument(
        "--store",
        metavar="FILE|URL",
        help="resolve in a durable store "
        "instead of over the API (postgresql://...: for every process of "
        "the app at once)",
    )
    resolve.add_argument(
        "--app",
        help="with --store: the app whose group it is (needed "
        "only when several apps have one with this ID)",
    )
    _add_access_options(resolve)

    check = sub.add_parser("check-config", help="validate a YAML configuration file")
    check.add_argument("file", metavar="FILE")

    serve = sub.add_parser(
        "serve",
        help="serve /metrics and /api/v1 of every worker of a "
        "multiprocess server (gunicorn, uwsgi) from their shared directory",
    )
    serve.add_argument(
        "--multiproc-dir",
        metavar="DIR",
        default=os.environ.get("PROMETHEUS_MULTIPROC_DIR"),
        help="the workers' PROMETHEUS_MULTIPROC_DIR (default: that variable)",
    )
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port (default 9718)")
    serve.add_argument("--config", metavar="FILE", help="YAML configuration (namespace, token)")
    _add_web_config_option(serve)
    serve.add_argument(
        "--store",
        metavar="URL",
        default=os.environ.get("ERROR_EXPORTER_STORE_URL"),
        help="serve the read API of a shared store (postgresql://...) with no "
        "app running: the fleet's groups (default: "
        "ERROR_EXPORTER_STORE_URL)",
    )
    serve.add_argument(
        "--app", help="with --store: whose groups (needed when the store holds several apps)"
    )
    _add_api_options(serve, url=False)
    return parser


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(args.url, token=args.token, access=access_from_args(args))


def cmd_demo(args: argparse.Namespace) -> int:
    from exporter.cli.demo import run_demo
    from exporter.config import ConfigError

    try:
        return run_demo(args)
    except ConfigError as exc:
        named = not args.config or args.config in str(exc)
        where = "" if named else f" in {args.config}"
        print(f"error: invalid configuration{where}: {exc}", file=sys.stderr)
        return 2


def cmd_watch(args: argparse.Namespace) -> int:
    from exporter.cli.watch import run_watch

    use_rich = not args.no_rich and sys.stdout.isatty()
    return run_watch(
        _client(args), refresh=args.refresh, use_rich=use_rich, iterations=args.iterations
    )


def cmd_analyze(args: argparse.Namespace) -> int:
    from exporter.cli import PipeConsole
    from exporter.cli.analyze import (
        NotAnExport,
        print_json,
        print_report,
        report_from_api,
        report_from_file,
    )

    if args.prometheus:
        from exporter.cli.fleet_view import analyze_fleet

        return analyze_fleet(args)
    if args.store:
        from exporter.cli.offline_store import StoreUnusable, report_from_store

        try:
            report = report_from_store(args.store, args.app)
        except StoreUnusable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif args.file:
        try:
            report = report_from_file(args.file)
        except NotAnExport as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    else:
        report = report_from_api(_client(args))
    if args.json:
        print_json(report)
    else:
        print_report(report, PipeConsole())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from exporter.cli.export import export

    filters = {
        "since": args.since,
        "until": args.until,
        "severity": args.severity,
        "component": args.component,
        "plugin": args.plugin,
        "error_type": args.error_type,
    }
    if args.store:
        from exporter.cli.offline_store import export_command

        if args.prometheus:
            print("error: --store and --prometheus cannot be combined", file=sys.stderr)
            return 2
        return export_command(args.store, args.output, filters, args.limit, args.app)
    if args.prometheus:
        from exporter.cli.fleet_view import export_fleet

        return export_fleet(args, filters)
    try:
        count = export(_client(args), args.output, filters, args.limit, args.page_size)
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {count} records to {args.output}", flush=True)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from exporter.cli.check_config import check_config

    return check_config(args.file)


def cmd_serve(args: argparse.Namespace) -> int:
    from exporter.multiprocess.sidecar import run_sidecar

    if args.store and not args.multiproc_dir:
        from exporter.cli.offline_store import serve_store

        return serve_store(args.store, args.app, args.host, args.port, args.token, args.config)
    if not args.multiproc_dir:
        print(
            "error: serve needs --multiproc-dir DIR (or PROMETHEUS_MULTIPROC_DIR), or "
            "--store postgresql://...",
            file=sys.stderr,
        )
        return 2
    return run_sidecar(
        args.multiproc_dir, args.host, args.port, args.token, args.config, args.web_config_file
    )


def cmd_resolve(args: argparse.Namespace) -> int:
    from exporter.cli.resolve import run_resolve

    if args.store:
        from exporter.cli.offline_store import resolve_command

        return resolve_command(args.store, args.error_id, args.app)
    return run_resolve(_client(args), args.error_id)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": cmd_demo,
    "watch": cmd_watch,
    "analyze": cmd_analyze,
    "export": cmd_export,
    "check-config": cmd_check_config,
    "serve": cmd_serve,
    "resolve": cmd_resolve,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except HttpStatusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if exc.status == 400 else 1  # 400: the server refused one of our options
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except AccessError as exc:  # a password or TLS file of the client that cannot be used
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `watch --no-rich | head`: the reader left, that is fine
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
