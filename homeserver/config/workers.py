"""Worker settings: which role this process plays and how it reaches the main process.

Synapse's spellings where the concept is the same: a worker file sets `worker_app` and
`worker_name`, every process shares `worker_replication_secret`, and the main process is named in
`instance_map: {main: {host, port}}` (or our shorter `worker_main_url`). `pusher_instances`,
`federation_sender_instances`, `notify_appservices_from_worker` and `run_background_tasks_on` tell
the main process which jobs it hands to workers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from homeserver.config.errors import ConfigError
from homeserver.config.parsing import Section

# Every role a process may take (docs/scale-out.md). `main` is the one writer of events and streams.
ROLES = (
    "main",
    "client_reader",
    "federation_inbound",
    "federation_sender",
    "pusher",
    "appservice",
    "media",
    "background",
)

# Synapse's worker_app names (old per-role apps and generic_worker) -> our role.
SYNAPSE_APPS = {
    "synapse.app.homeserver": "main",
    "synapse.app.client_reader": "client_reader",
    "synapse.app.synchrotron": "client_reader",
    "synapse.app.federation_reader": "federation_inbound",
    "synapse.app.federation_sender": "federation_sender",
    "synapse.app.pusher": "pusher",
    "synapse.app.appservice": "appservice",
    "synapse.app.media_repository": "media",
    "synapse.app.background_worker": "background",
}
GENERIC_WORKER = "synapse.app.generic_worker"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    role: str = "main"
    name: str = "main"
    replication_secret: str | None = None
    main_url: str | None = None  # http://host:port of the main process's `replication` listener
    pusher_instances: tuple[str, ...] = ()
    # the outbound federation sender (one instance: destinations are not sharded between several)
    federation_sender_instances: tuple[str, ...] = ()
    appservice_worker: str | None = None  # notify_appservices_from_worker
    background_worker: str | None = None  # run_background_tasks_on

    @property
    def is_main(self) -> bool:
        return self.role == "main"


class UnknownRoleError(ConfigError):
    pass


def normalise_role(value: str) -> str:
    """A role name (ours, or a Synapse worker_app); raises UnknownRoleError with the choices."""
    role = SYNAPSE_APPS.get(value, value)
    if role not in ROLES:
        raise UnknownRoleError(f"unknown worker role {value!r} (roles: {', '.join(ROLES)})", "worker_app")
    return role


def read_workers(root: Section) -> WorkerConfig:
    app = root.get_opt_str("worker_app")
    if app == GENERIC_WORKER:
        role = normalise_role(root.get_str("worker_role", "client_reader"))
    elif app is not None:
        role = normalise_role(app)
    else:
        role = normalise_role(root.get_str("worker_role", "main"))
    name = root.get_opt_str("worker_name") or ("main" if role == "main" else role)
    instance_map = root.section("instance_map")
    main_url = root.get_opt_str("worker_main_url")
    if main_url is None and instance_map.has("main"):
        entry = instance_map.section("main")
        host = entry.get_str("host", "localhost")
        port = entry.get_int("port", 0, minimum=1, maximum=65535)
        scheme = "https" if entry.get_bool("tls", False) else "http"
        main_url = f"{scheme}://{host}:{port}"
    elif instance_map.has("main"):
        instance_map.mark_read("main")
    background = root.get_opt_str("run_background_tasks_on")
    federation_senders = root.get_str_list("federation_sender_instances")
    if len(federation_senders) > 1:
        # Each destination's queue must have one sender; sharding them is not implemented.
        raise ConfigError(
            "only one federation sender instance is supported (destinations are not sharded)",
            "federation_sender_instances",
        )
    return WorkerConfig(
        role=role,
        name=name,
        replication_secret=root.get_opt_str("worker_replication_secret"),
        main_url=main_url.rstrip("/") if main_url else None,
        pusher_instances=root.get_str_list("pusher_instances"),
        federation_sender_instances=federation_senders,
        appservice_worker=root.get_opt_str("notify_appservices_from_worker"),
        background_worker=None if background in (None, "main") else background,
    )


def check_worker_setup(workers: WorkerConfig, redis_enabled: bool, engine: str = "postgres") -> None:
    """A worker needs PostgreSQL (shared by every process), Redis, the shared secret and the main
    process's address."""
    if workers.is_main:
        return
    if engine != "postgres":
        raise ConfigError(f"a {workers.role} worker needs PostgreSQL (every process shares it)", "database")
    if not redis_enabled:
        raise ConfigError(f"a {workers.role} worker needs `redis: {{enabled: true}}`", "redis")
    if not workers.replication_secret:
        raise ConfigError("a worker needs the shared secret", "worker_replication_secret")
    if not workers.main_url:
        raise ConfigError(
            "a worker needs the main process's address: `instance_map: {main: {host, port}}`",
            "instance_map",
        )
    if workers.role == "federation_sender" and workers.name not in workers.federation_sender_instances:
        # Otherwise it would idle while main (or another worker) sends: say so at start.
        raise ConfigError(
            f"the federation_sender worker {workers.name!r} must be named in `federation_sender_instances`"
            " (main sends otherwise)",
            "federation_sender_instances",
        )


def with_role(workers: WorkerConfig, role: str) -> WorkerConfig:
    """`homeserver run --worker ROLE`: the command line wins over the file."""
    role = normalise_role(role)
    default_name = workers.name in ("main", workers.role)
    name = ("main" if role == "main" else role) if default_name else workers.name
    return replace(workers, role=role, name=name)
