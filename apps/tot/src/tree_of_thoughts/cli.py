"""``tot``: serve the Tree-of-Thoughts server, manage its signing keys, issue a token by hand."""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Sequence

from platform_common.logs import configure_logging
from platform_common.runner import serve
from platform_common.settings import SettingsError
from tree_of_thoughts.config import TotSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tot",
        description="Tree-of-Thoughts MCP server and token issuer. Every flag can also be set by the "
        "environment variable shown.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser(
        "serve",
        help="Serve the REST API, /mcp, the token endpoint and metrics.",
        description="Serve the ToT server. With DATABASE_URL runs live in PostgreSQL; without it, in memory.",
    )
    TotSettings.add_arguments(serve_cmd)
    keys_cmd = commands.add_parser("keys", help="List, rotate or revoke the token signing keys in the key store.")
    keys_action = keys_cmd.add_subparsers(dest="action", required=True)
    for action, text in (
        ("list", "Show the published keys (never the private parts)."),
        (
            "rotate",
            "Publish a new signing key now; it signs after KEY_RELOAD_SECONDS + 35 s, when every replica "
            "and verifier can know it. The old one stays published for the overlap.",
        ),
        (
            "revoke",
            "Delete a key from the key store: every replica stops publishing, verifying and signing with it "
            "within KEY_RELOAD_SECONDS. Revoking the signing key makes a successor sign at once.",
        ),
    ):
        action_cmd = keys_action.add_parser(action, help=text, description=text)
        if action == "revoke":
            action_cmd.add_argument("kid", help="The key id, as `tot keys list` shows it.")
        TotSettings.add_arguments(action_cmd)
    token_cmd = commands.add_parser("token", help="Issue a token signed with the configured key store.")
    token_action = token_cmd.add_subparsers(dest="action", required=True)
    issue = token_action.add_parser("issue", help="Print an access token for --sub with --scope.")
    issue.add_argument("--sub", required=True, help="Subject (who the token is for).")
    issue.add_argument("--scope", required=True, help='Space-separated scopes, e.g. "registry:read tot:run".')
    issue.add_argument("--aud", default=None, help="Audience (default AUTH_AUDIENCE).")
    issue.add_argument(
        "--ttl-hours", type=float, default=None, help="Lifetime (default and maximum JWT_EXPIRATION_HOURS)."
    )
    TotSettings.add_arguments(issue)
    credentials_cmd = commands.add_parser(
        "credentials", help="Create the database Secret once, with generated passwords (the chart's hook Job)."
    )
    credentials_action = credentials_cmd.add_subparsers(dest="action", required=True)
    ensure = credentials_action.add_parser(
        "ensure",
        help="Create --secret with random passwords if missing; otherwise keep its passwords and rewrite its URLs.",
        description="Passwords are generated once and never printed; URLs get the first --password-key's password.",
    )
    ensure.add_argument("--secret", required=True, help="The Secret holding passwords and URLs.")
    ensure.add_argument("--namespace", default="", help="Default: the service account's namespace.")
    ensure.add_argument("--username", required=True, help="The application role the URLs name.")
    ensure.add_argument(
        "--password-key", action="append", required=True, help="A password key; the first is the role's."
    )
    ensure.add_argument("--url", action="append", default=[], metavar="KEY=URL", help="A URL key, without password.")
    ensure.add_argument("--basic-auth-secret", default="", help="Also keep a basic-auth copy (CloudNativePG).")
    ensure.add_argument(
        "--restart-deployment",
        action="append",
        default=[],
        metavar="NAME",
        help="A Deployment reading the Secret: its pod template gets the Secret's checksum (a change rolls it).",
    )
    ensure.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    ensure.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE")
    return parser


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    pairs = dict(v.split("=", 1) for v in values if "=" in v)
    if len(pairs) != len(values):
        sys.exit(f"tot: {flag} takes KEY=VALUE")
    return pairs


def _credentials(args: argparse.Namespace) -> None:
    from kubernetes.client.exceptions import ApiException

    from tree_of_thoughts.credentials import CredentialsError, DatabaseSecret, ensure
    from tree_of_thoughts.issuer.stores import kubernetes_api, own_namespace

    wanted = DatabaseSecret(
        name=args.secret,
        namespace=args.namespace or own_namespace(),
        username=args.username,
        password_keys=args.password_key,
        urls=_pairs(args.url, "--url"),
        basic_auth_secret=args.basic_auth_secret,
        labels=_pairs(args.label, "--label"),
        annotations=_pairs(args.annotation, "--annotation"),
        restart=args.restart_deployment,
    )
    try:
        print(ensure(kubernetes_api(), wanted))
    except CredentialsError as exc:
        sys.exit(f"tot: {exc}")
    except ApiException as exc:  # e.g. 403: the Job's Role does not grant it; the reason, not the body
        sys.exit(f"tot: the Kubernetes API answered {exc.status} {exc.reason} for Secret {args.secret}")


def _keys(settings: TotSettings, args: argparse.Namespace) -> None:
    # Imported here, not at the top: `serve` must import prometheus_client (the issuer's metrics) only
    # after the runner set PROMETHEUS_MULTIPROC_DIR, or a single-worker server exports no app metrics.
    from tree_of_thoughts.issuer import key_manager

    manager = key_manager(settings)
    if args.action == "rotate":
        record = manager.rotate()
        print(f"rotated: new signing key {record.kid} signs from {_time(record.activates_at)}")
        return
    if args.action == "revoke":
        try:
            record = manager.revoke(args.kid)
        except KeyError:
            sys.exit(f"tot: no key {args.kid!r} in the key store (see `tot keys list`)")
        print(f"revoked {args.kid}; signing key {record.kid}")
        return
    manager.refresh()  # creates the first key when the store is empty, like a server start
    signing = manager.signing_key()[0]
    for record in manager.published_keys():
        state = "signing" if record.kid == signing else f"published, signs from {_time(record.activates_at)}"
        if record.kid != signing and record.activates_at <= time.time():
            state = "retired"
        print(f"{record.kid}  created {_time(record.created_at)}  {state}")


def _time(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")


def _token(settings: TotSettings, args: argparse.Namespace) -> None:
    if args.ttl_hours is not None and not 0 < args.ttl_hours <= settings.jwt_expiration_hours:
        # A longer token could outlive its key in the JWKS (the overlap is sized for this maximum).
        sys.exit(f"tot: --ttl-hours must be in (0, JWT_EXPIRATION_HOURS={settings.jwt_expiration_hours:g}]")
    from tree_of_thoughts.issuer import build_issuer  # see _keys

    issuer = build_issuer(settings)
    issuer.keys.refresh()
    ttl = args.ttl_hours * 3600 if args.ttl_hours is not None else None
    token, _ = issuer.tokens.issue(args.sub, args.scope.split(), audience=args.aud, ttl_seconds=ttl)
    print(token)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "credentials":  # needs no settings: it only talks to the Kubernetes API
        configure_logging("INFO", "json")
        try:
            _credentials(args)
        except SettingsError as exc:
            sys.exit(f"tot: {exc}")
        return
    try:
        settings = TotSettings.from_args(args)
    except SettingsError as exc:
        sys.exit(f"tot: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    try:
        if args.command == "serve":
            serve(settings, "tree_of_thoughts.app:factory")
        elif args.command == "keys":
            _keys(settings, args)
        elif args.command == "token":
            _token(settings, args)
    except SettingsError as exc:
        sys.exit(f"tot: {exc}")
