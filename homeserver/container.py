"""The composition root: builds every store and service explicitly from the config.

No global service locator: handlers reach services through `ApiRequest.services`, services get
their collaborators through their constructors.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeserver.appservice.api import AppServiceApi
from homeserver.appservice.loading import load_registrations
from homeserver.appservice.queries import AppServiceQueries
from homeserver.appservice.registry import InMemoryAppServiceRegistry, check_user_id_not_exclusive
from homeserver.appservice.sender.service import AppServiceSender
from homeserver.auth_providers.ldap import LdapAuthProvider
from homeserver.config.sections import HomeserverConfig, RateLimit
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.core.streams import Stream
from homeserver.crypto.keyring import DelegatingKeyring, Keyring
from homeserver.crypto.keys import decode_verify_key, load_or_create_signing_key
from homeserver.federation.backoff import DestinationBackoff
from homeserver.federation.client import FederationClient
from homeserver.federation.edu_handlers import FederationEduHandlers
from homeserver.federation.edus import EduRegistry
from homeserver.federation.event_handler import FederationEventHandler
from homeserver.federation.hierarchy import FederationHierarchy
from homeserver.federation.keyring import FederationKeyring
from homeserver.federation.keyserver import KeyServer
from homeserver.federation.membership_client import RemoteMembership
from homeserver.federation.membership_server import MembershipServer
from homeserver.federation.queries import RemoteQueries
from homeserver.federation.remote_devices import RemoteDeviceLists
from homeserver.federation.remote_events import RemoteEvents
from homeserver.federation.remote_keys import RemoteKeyQueries
from homeserver.federation.remote_rooms import RemoteRooms, RemoteTimestamps
from homeserver.federation.room_reads import FederationRoomReads
from homeserver.federation.sender import FederationSender
from homeserver.federation.sender.admin import DestinationAdmin
from homeserver.federation.sender.destinations import DestinationResolver
from homeserver.federation.sender.edus import LocalEdus
from homeserver.federation.sender.outbox import FederationOutbox, OutboxReader
from homeserver.federation.server_access import ServerAccess
from homeserver.federation.transactions import TransactionHandler
from homeserver.http.federation_ratelimit import FederationRateLimiter
from homeserver.http.outbound import IPFilter, OutboundClient
from homeserver.http.ratelimit import Bucket, RateLimiter
from homeserver.http.requester import Requester
from homeserver.jobs.runner import JobRunner
from homeserver.media.setup import build_media_repository
from homeserver.metrics import set_server_name
from homeserver.metrics.process import LoopLagMonitor
from homeserver.notifier import metrics as notifier_metrics
from homeserver.notifier.notifier import Notifier
from homeserver.persist.metrics import PersistMetrics
from homeserver.persist.metrics import queue_length as persist_queue_length
from homeserver.persist.persister import EventPersister
from homeserver.replication.bus import StreamBus
from homeserver.scaleout.main_client import MainClient
from homeserver.scaleout.setup import Replication, forward_sync_presence, handshake, start_replication
from homeserver.services.account_data import AccountDataService
from homeserver.services.accounts import AccountService, TokenSettings
from homeserver.services.admin_media import AdminMediaService
from homeserver.services.admin_reports import AdminReportService
from homeserver.services.admin_rooms import AdminRoomService
from homeserver.services.admin_users import AdminUserService
from homeserver.services.audit import AuditLog
from homeserver.services.audit_sink import AuditSink
from homeserver.services.auth import AuthService
from homeserver.services.client_ips import ClientIpTracker
from homeserver.services.content_policy import ContentPolicy
from homeserver.services.device_lists import DeviceListService
from homeserver.services.devices import DeviceService
from homeserver.services.directory import DirectoryService
from homeserver.services.e2e_keys import E2eKeysService
from homeserver.services.erasure import ErasureService
from homeserver.services.filters import FilterService
from homeserver.services.ignore import IgnoreService
from homeserver.services.key_backup import KeyBackupService
from homeserver.services.ldap_login import LdapLogin
from homeserver.services.login_tokens import LoginTokens
from homeserver.services.membership import MembershipService
from homeserver.services.messages import MessageService
from homeserver.services.metrics import presence_pending_writes
from homeserver.services.notifications import NotificationService
from homeserver.services.notifications_list import NotificationsListService
from homeserver.services.openid import OpenIdService
from homeserver.services.passwords import PasswordHasher
from homeserver.services.presence import PresenceService
from homeserver.services.profiles import ProfileService
from homeserver.services.push_delivery.deps import DeliveryDeps
from homeserver.services.push_delivery.pool import PusherPool
from homeserver.services.push_delivery.unsubscribe import UnsubscribeTokens
from homeserver.services.push_rules import PushRulesService
from homeserver.services.pushers import PusherService
from homeserver.services.receipts import ReceiptService
from homeserver.services.registration_tokens import RegistrationTokenService
from homeserver.services.reports import ReportService
from homeserver.services.restrictions import UserRestrictions
from homeserver.services.retention import RETENTION_PURGE, RetentionService
from homeserver.services.room_access import RoomAccess
from homeserver.services.room_deletion import RoomDeletionService
from homeserver.services.room_reads import RoomReadService
from homeserver.services.room_upgrades import RoomUpgradeService
from homeserver.services.rooms import RoomService
from homeserver.services.search import SearchService
from homeserver.services.serialize import EventSerializer
from homeserver.services.server_admins import ServerAdminService
from homeserver.services.server_notices import ServerNoticeService
from homeserver.services.shared_secret import SharedSecretRegistration
from homeserver.services.spaces import SpaceHierarchyService
from homeserver.services.sso import SsoService
from homeserver.services.tags import TagService
from homeserver.services.timeline import TimelineService
from homeserver.services.to_device import ToDeviceService
from homeserver.services.typing import TypingService
from homeserver.services.uia import UiaService
from homeserver.services.user_directory import UserDirectoryService
from homeserver.services.visibility import VisibilityService
from homeserver.sso.oidc import OidcProvider
from homeserver.sso.session import SessionSigner
from homeserver.state.indexes import MembershipIndex, RoomStreamIndex, RoomTailCache
from homeserver.state.service import StateService
from homeserver.storage.database import Database
from homeserver.storage.engine import open_database
from homeserver.storage.metrics import bind_pool_gauges
from homeserver.storage.migrations import SchemaOutdatedError, migrate, pending
from homeserver.storage.positions import max_position
from homeserver.storage.stores.account_data import AccountDataStore
from homeserver.storage.stores.admin_media import AdminMediaStore
from homeserver.storage.stores.admin_rooms import AdminRoomStore
from homeserver.storage.stores.admin_users import AdminUserStore
from homeserver.storage.stores.appservice_txns import AppServiceTxnStore
from homeserver.storage.stores.audit import AuditStore
from homeserver.storage.stores.client_ips import ClientIpStore
from homeserver.storage.stores.compliance import ComplianceStore
from homeserver.storage.stores.dag import DagStore
from homeserver.storage.stores.devices import DeviceStore
from homeserver.storage.stores.directory import DirectoryStore
from homeserver.storage.stores.e2e import E2eStore
from homeserver.storage.stores.events import EventStore, RoomVersionLookup
from homeserver.storage.stores.federation import DestinationStore, ServerKeyStore
from homeserver.storage.stores.federation_inbound import InboundFederationStore
from homeserver.storage.stores.federation_queue import DestinationAdminStore, FederationQueueStore
from homeserver.storage.stores.jobs import JobStore
from homeserver.storage.stores.key_backup import KeyBackupStore
from homeserver.storage.stores.login_tokens import LoginTokenStore
from homeserver.storage.stores.misc import FilterStore, NonceStore, RegistrationTokenStore, UiaStore
from homeserver.storage.stores.openid import OpenIdStore
from homeserver.storage.stores.presence import PresenceStore
from homeserver.storage.stores.push_actions import PushActionStore
from homeserver.storage.stores.push_rules import PushRuleStore
from homeserver.storage.stores.pushers import Pusher, PusherStore
from homeserver.storage.stores.receipts import ReceiptStore
from homeserver.storage.stores.remote_devices import RemoteDeviceStore
from homeserver.storage.stores.reports import ReportStore
from homeserver.storage.stores.rooms import RoomStore
from homeserver.storage.stores.search import SearchStore
from homeserver.storage.stores.sliding_sync import SlidingSyncStore
from homeserver.storage.stores.state import StateStore
from homeserver.storage.stores.timeline import TimelineStore
from homeserver.storage.stores.user_directory import UserDirectoryStore
from homeserver.storage.stores.users import UserStore
from homeserver.storage.streams import StreamIdGenerator
from homeserver.sync.e2ee import E2eeSyncExtension
from homeserver.sync.ephemeral import IgnoreExtension, PresenceExtension, ReceiptsExtension, TypingExtension
from homeserver.sync.live import LiveConnections
from homeserver.sync.service import SyncService
from homeserver.sync.sliding.connections import ConnectionStore
from homeserver.sync.sliding.service import SlidingSyncService
from homeserver.sync.sliding.summaries import RoomSummaryIndex
from homeserver.sync.unread import UnreadCountsExtension

logger = logging.getLogger(__name__)


async def load_stream_positions(db: Database) -> dict[Stream, int]:
    async def max_of(table: str, column: str) -> int:
        return await max_position(db, table, column)

    return {
        Stream.EVENTS: await max_of("events", "stream_ordering"),
        Stream.ACCOUNT_DATA: await max_of("account_data", "stream_id"),
        Stream.TO_DEVICE: await E2eStore.load_to_device_position(db),
        Stream.DEVICE_LISTS: await E2eStore.load_device_lists_position(db),
        Stream.RECEIPTS: await max_of("receipts", "stream_id"),
        Stream.PRESENCE: await max_of("presence", "stream_id"),
    }


def bucket(limit: RateLimit) -> Bucket:
    return Bucket(float(limit.per_second), float(limit.burst_count))


@dataclass(frozen=True, slots=True)
class RouteLimit:
    """A rate limit a route declares by name (`Router.route(..., ratelimit=NAME)`)."""

    limit: Callable[[HomeserverConfig], RateLimit]  # the config's bucket
    by_ip: bool = False  # keyed by client IP; else by user, and anonymous requests pass
    bucket_name: str | None = None  # the limiter's name when it differs from the route's


ROUTE_RATE_LIMITS: dict[str, RouteLimit] = {
    "login": RouteLimit(lambda c: c.rc_login.address, by_ip=True, bucket_name="login_address"),
    "registration": RouteLimit(lambda c: c.rc_registration, by_ip=True),
    "message": RouteLimit(lambda c: c.rc_message),
    "media_create": RouteLimit(lambda c: c.rc_media_create),
    "url_preview": RouteLimit(lambda c: c.media.rc_url_preview),
    "user_directory": RouteLimit(lambda c: c.rc_user_directory),
    "reports": RouteLimit(lambda c: c.rc_reports),
}


# Job kinds the `background` worker takes over from main: they send no events (event senders
# stay with the event persister).
BACKGROUND_JOB_KINDS = frozenset({RETENTION_PURGE})


class Services:
    """Everything a process needs, wired together. Build with `await Services.create(...)`."""

    def __init__(
        self,
        config: HomeserverConfig,
        db: Database,
        clock: Clock,
        role: str = "main",
        *,
        stream_positions: dict[Stream, int],
        main_client: MainClient | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.role = role
        # scale-out (docs/scale-out.md): a worker's link to main; the Redis side once started
        self.main_client = main_client
        self.replication: Replication | None = None
        self.ratelimiter = RateLimiter(clock)

        # stores
        self.users = UserStore(db)
        self.device_store = DeviceStore(db)
        self.uia_store = UiaStore(db)

        # who is asking: appservice tokens (registration files load into this registry); the
        # verify keys of other servers for X-Matrix come from the keyring (_build_federation)
        self.appservices = InMemoryAppServiceRegistry(
            load_registrations(config.app_service_config_files, config.server_name)
        )

        # the audit log and admin-set restrictions come first: account and room services record
        # into / consult them (docs/admin.md)
        self.audit = AuditLog(
            db,
            AuditStore(db),
            clock,
            retention_ms=config.audit_log_retention_period,
            log_admin_room_reads=config.audit_log_admin_room_reads,
        )
        self.admin_user_store = AdminUserStore(db)
        self.restrictions = UserRestrictions(self.admin_user_store)

        # services
        self.auth = AuthService(self.device_store, self.users, self.appservices, clock)
        # WebSocket sync connections (docs/websocket.md): closed at once when their token goes.
        self.live_sync = LiveConnections()
        self.auth.token_listeners.append(self.live_sync.tokens_invalidated)
        self.auth.user_listeners.append(self.live_sync.user_invalidated)
        self.appservice_api = AppServiceApi()
        self.appservice_queries = AppServiceQueries(self.appservices, self.appservice_api)
        self.client_ips = ClientIpTracker(ClientIpStore(db), clock)
        self.uia = UiaService(self.uia_store, clock)
        self.profiles = ProfileService(self.users, config.server_name)
        self.profiles.unknown_user_query = self.appservice_queries.query_user
        self.server_admins = ServerAdminService(self.users, self.auth, server_name=config.server_name)
        self.hasher = PasswordHasher(rounds=config.bcrypt_rounds)
        self.accounts = AccountService(
            db,
            self.users,
            self.device_store,
            self.auth,
            self.hasher,
            clock,
            self.ratelimiter,
            server_name=config.server_name,
            tokens=TokenSettings(
                access_lifetime=config.refreshable_access_token_lifetime,
                refresh_lifetime=config.refresh_token_lifetime,
                session_lifetime=config.session_lifetime,
            ),
            rc_login_account=bucket(config.rc_login.account),
            rc_login_failed=bucket(config.rc_login.failed_attempts),
            audit=self.audit,
        )
        self.accounts.reserved_user_check = functools.partial(check_user_id_not_exclusive, self.appservices)
        self.accounts.threepid_owner = self.admin_user_store.threepid_owner
        if config.ldap is not None:  # the matrix-synapse-ldap3 block under `modules:`
            LdapLogin(LdapAuthProvider(config.ldap), self.accounts, self.admin_user_store, clock).install()

        # rooms and events
        server_name = config.server_name
        self.signing_key = load_or_create_signing_key(config.signing_key_path)
        self._build_federation()
        self._build_sso()
        self.room_versions = RoomVersionLookup(db)
        self.events = EventStore(db, self.room_versions)
        self.rooms = RoomStore(db)
        self.state_groups = StateStore(db)
        self.state = StateService(self.rooms, self.events, self.room_versions, self.state_groups)
        self.notifier = Notifier()
        # Typed rows of every stream after each commit; see replication/bus.py and _wire_hooks.
        self.bus = StreamBus()
        self.persister = EventPersister(
            db,
            self.events,
            self.rooms,
            self.state,
            clock,
            server_name,
            self.signing_key,
            stream_positions[Stream.EVENTS],
            bus=self.bus,
            groups=self.state_groups,
        )
        self.room_streams = RoomStreamIndex()
        self.room_tails = RoomTailCache(self.room_streams)
        self.memberships = MembershipIndex(self.rooms, server_name)
        self.visibility = VisibilityService(self.rooms, self.events)
        self.serializer = EventSerializer(self.events, clock)
        self.account_data_stream = StreamIdGenerator(
            Stream.ACCOUNT_DATA, stream_positions[Stream.ACCOUNT_DATA]
        )
        self.account_data_store = AccountDataStore(db)
        self.account_data = AccountDataService(self.account_data_store, self.account_data_stream, self.bus)
        self.push_rules = PushRulesService(db, PushRuleStore(db), self.account_data)
        self.membership = MembershipService(
            self.persister,
            self.state,
            self.rooms,
            self.users,
            server_name=server_name,
            audit=self.audit,
            restrictions=self.restrictions,
        )
        self.messages = MessageService(
            self.persister,
            self.state,
            self.events,
            self.rooms,
            server_name=server_name,
            restrictions=self.restrictions,
        )
        self.room_service = RoomService(
            self.persister,
            self.rooms,
            self.users,
            self.membership,
            clock,
            server_name=server_name,
            default_room_version=config.default_room_version,
            may_publish=self._may_publish,
            audit=self.audit,
        )
        self.room_access = RoomAccess(self.state, self.rooms)
        self.directory = DirectoryService(
            DirectoryStore(db),
            self.rooms,
            self.events,
            self.state,
            clock,
            server_name=server_name,
            may_create_alias=config.may_create_alias,
            may_publish_room=config.may_publish_room,
            send_state=self.messages.send_state,
            require_membership_for_aliases=config.require_membership_for_aliases,
            enable_room_list_search=config.enable_room_list_search,
        )
        self.directory.remote_alias = self.remote_queries.directory
        self.directory.unknown_alias_query = self.appservice_queries.query_alias
        self.spaces = SpaceHierarchyService(self.directory, self.memberships)
        self.sync = SyncService(
            self.notifier,
            self.state,
            self.events,
            self.rooms,
            self.memberships,
            self.room_streams,
            self.visibility,
            self.serializer,
            self.account_data,
            self.room_tails,
        )
        self.timeline = TimelineService(
            TimelineStore(db),
            self.events,
            self.room_access,
            self.visibility,
            self.serializer,
            state_ids_at=self.state.state_ids_at,
            current_position=lambda: self.notifier.current.events,
        )
        self.media = build_media_repository(config, db, clock, self.federation_client)
        self._build_e2ee(stream_positions)
        self._build_ephemeral(stream_positions)
        self._build_search()
        self._build_notifications()
        self._build_moderation()
        self._build_client_services()
        self._build_admin()
        self._build_admin_users()
        self._build_compliance()
        self._build_federation_membership()
        self._build_federation_inbound()
        self._build_federation_reads()
        self._build_federation_edus()
        self._build_appservice_sender()
        self._build_federation_sender()
        self._build_sliding_sync()
        self._wire_hooks()
        self._wire_metrics()

    def _build_appservice_sender(self) -> None:
        """Transactions pushed to appservices (appservice/sender/); only the main process sends."""
        self.appservice_sender = AppServiceSender(
            self.appservices,
            AppServiceTxnStore(self.db),
            self.appservice_api,
            self.bus,
            self.events,
            self.serializer,
            self.rooms,
            self.state,
            self.receipts,
            self.presence,
            self.memberships,
            self.clock,
            server_name=self.config.server_name,
        )
        if self.runs("appservice"):
            self.directory.alias_changed_hooks.append(self.appservice_sender.interest.alias_changed)
            self.appservice_api.ping_hooks.append(self.appservice_sender.force_retry)

    def _build_admin(self) -> None:
        """The room, media and server-notice admin API, and the background jobs behind it."""
        db, clock, config = self.db, self.clock, self.config
        server_name = config.server_name
        # Main runs the jobs; with `run_background_tasks_on` the background worker runs those
        # that send no events (retention purges) and main the rest. Other roles run none.
        handed = BACKGROUND_JOB_KINDS if self.config.workers.background_worker is not None else frozenset()
        if self.role == "main":
            self.jobs = JobRunner(JobStore(db), clock, excluded_kinds=handed)
        else:
            background = self.runs("background")
            self.jobs = JobRunner(JobStore(db), clock, enabled=background, kinds=BACKGROUND_JOB_KINDS)
        self.admin_audit: AuditSink = self.audit
        admin_store = AdminRoomStore(db)
        self.admin_rooms = AdminRoomService(
            admin_store,
            self.rooms,
            self.events,
            self.state,
            self.users,
            self.persister,
            self.membership,
            self.directory,
            self.serializer,
            clock,
            server_name=server_name,
            audit=self.admin_audit,
        )
        self.membership.join_checks.append(self.admin_rooms.check_not_blocked)
        self.room_deletion = RoomDeletionService(
            self.jobs,
            admin_store,
            self.rooms,
            self.events,
            self.room_versions,
            SearchStore(db),
            self.state,
            self.persister,
            self.membership,
            self.room_service,
            clock,
            server_name=server_name,
            audit=self.admin_audit,
        )
        self.admin_media = AdminMediaService(
            AdminMediaStore(db), self.media, self.admin_rooms, server_name=server_name, audit=self.admin_audit
        )
        self.server_notices = ServerNoticeService(
            config.server_notices,
            admin_store,
            self.users,
            self.state,
            self.persister,
            self.membership,
            self.room_service,
            self.account_data,
            self.jobs,
            clock,
            server_name=server_name,
            audit=self.admin_audit,
        )

    def _build_sso(self) -> None:
        """OIDC single sign-on and the login tokens it ends with."""
        config = self.config
        self.login_tokens = LoginTokens(LoginTokenStore(self.db), self.accounts, self.clock)
        # Identity providers are fetched like everything else outbound: through the IP filter.
        self.sso_http = OutboundClient(
            IPFilter(config.ip_range_blacklist, config.ip_range_whitelist), user_agent="homeserver-sso"
        )
        self.sso = SsoService(
            [OidcProvider(p, self.sso_http) for p in config.oidc_providers],
            config.sso,
            self.accounts,
            self.admin_user_store,
            self.login_tokens,
            SessionSigner(bytes(self.signing_key.signing_key), self.clock),
            self.clock,
            self.uia,
            self.profiles,
            public_baseurl=config.public_baseurl,
        )

    def _build_federation(self) -> None:
        """Outbound federation client with backoff, the remote keyring, the key server."""
        config, clock = self.config, self.clock
        fed = config.federation
        self.destinations = DestinationBackoff(
            DestinationStore(self.db),
            clock,
            min_interval=fed.destination_min_retry_interval,
            multiplier=fed.destination_retry_multiplier,
            max_interval=fed.destination_max_retry_interval,
        )
        self.federation_client = FederationClient(config, self.signing_key, clock, self.destinations)
        self.server_key_store = ServerKeyStore(self.db)
        # Our current key verifies forever for ourselves; old keys until they expired.
        own_keys = {self.signing_key.key_id: (self.signing_key.verify_key, 2**62)}
        for old in fed.old_signing_keys:
            own_keys.setdefault(old.key_id, (decode_verify_key(old.key_id, old.key), old.expired_ts))
        self.federation_keyring = FederationKeyring(
            self.server_key_store,
            self.federation_client,
            clock,
            server_name=config.server_name,
            own_keys=own_keys,
            trusted_key_servers=config.trusted_key_servers,
        )
        self.keyring: Keyring = self.federation_keyring  # what X-Matrix checks use (tests swap it)
        self.key_server = KeyServer(
            config.server_name,
            self.signing_key,
            fed.old_signing_keys,
            clock,
            self.server_key_store,
            self.federation_keyring,
            key_refresh_interval=config.key_refresh_interval,
        )
        self.remote_queries = RemoteQueries(self.federation_client)
        # Inbound EDU handlers by type; the services owning the data register theirs.
        self.federation_edus = EduRegistry()
        self.federation_ratelimiter = FederationRateLimiter(clock, config.rc_federation)
        self.profiles.remote_lookup = self.remote_queries.profile

    def _build_federation_membership(self) -> None:
        """Joins, knocks, leaves and invites across servers, both directions (issue #12)."""
        self.membership_server = MembershipServer(
            self.state,
            self.events,
            self.state_groups,
            self.users,
            self.persister,
            self.clock,
            server_name=self.config.server_name,
            signing_key=self.signing_key,
            keyring=lambda: self.keyring,  # read at use: tests swap the keyring
        )
        self.membership.remote = RemoteMembership(
            self.federation_client,
            self.persister,
            self.state,
            self.events,
            self.clock,
            server_name=self.config.server_name,
            signing_key=self.signing_key,
            keyring=lambda: self.keyring,
        )

    def _build_federation_inbound(self) -> None:
        """The inbound event pipeline (federation/event_handler.py) and PUT /send transactions."""
        self.federation_inbound_store = InboundFederationStore(self.db)
        self.federation_events = FederationEventHandler(
            server_name=self.config.server_name,
            persister=self.persister,
            state=self.state,
            events=self.events,
            groups=self.state_groups,
            store=self.federation_inbound_store,
            resolver=self.persister.resolver,
            # through the attribute, so a keyring swapped in later (tests) is the one used
            keyring=DelegatingKeyring(lambda: self.keyring),
            remote=RemoteEvents(self.federation_client),
            clock=self.clock,
        )
        # /messages past the start of our history backfills; backfilled events' visibility comes
        # from the state before them
        self.timeline.backfill = self.federation_events.backfill_for_client
        if self.membership.remote is not None:
            self.membership.remote.place_outlier_prevs = self.federation_events.place_outlier_prevs
        self.visibility.state_before_event = functools.partial(self.state.state_ids_at_event, before=True)
        self.federation_transactions = TransactionHandler(
            events=self.federation_events,
            edus=self.federation_edus,
            store=self.federation_inbound_store,
            state=self.state,
            clock=self.clock,
        )

    def _build_federation_reads(self) -> None:
        """What other servers may read here (history, state, directory, hierarchy, OpenID), and the
        client paths that read other servers' rooms (docs/federation.md)."""
        db, server_name = self.db, self.config.server_name
        self.server_access = ServerAccess(self.state, self.events, self.state_groups, self.visibility)
        self.federation_reads = FederationRoomReads(
            self.server_access,
            self.events,
            DagStore(db),
            self.state,
            self.state_groups,
            TimelineStore(db),
            self.clock,
            server_name=server_name,
        )
        self.federation_hierarchy = FederationHierarchy(self.directory, self.state, self.server_access)
        self.openid = OpenIdService(OpenIdStore(db), self.clock, server_name=server_name)
        self.remote_rooms = RemoteRooms(self.federation_client)
        self.spaces.remote_hierarchy = self.remote_rooms.hierarchy_lookup
        self.timeline.remote_timestamp = RemoteTimestamps(
            self.state, self.remote_rooms, server_name=server_name
        ).lookup

    def _build_federation_edus(self) -> None:
        """Inbound EDU handlers, remote users' device lists and keys (E2EE across servers)."""
        server_name = self.config.server_name
        self.remote_device_store = RemoteDeviceStore(self.db)
        self.remote_devices = RemoteDeviceLists(
            self.remote_device_store,
            self.e2e_store,
            self.device_lists,
            self.state,
            self.federation_client,
            self.clock,
            server_name=server_name,
        )
        if self.role == "main":  # resyncs write: the writer's job
            self.bus.subscribe(Stream.EVENTS, self.remote_devices.on_events)
        remote_keys = RemoteKeyQueries(
            self.remote_devices, self.remote_device_store, self.e2e_store, self.federation_client
        )
        self.e2e_keys.remote_query = remote_keys.query_body
        self.e2e_keys.remote_claim = remote_keys.claim
        FederationEduHandlers(
            self.state,
            self.typing,
            self.receipts,
            self.presence,
            self.to_device,
            self.remote_devices,
            self.remote_device_store,
            self.clock,
            server_name=server_name,
        ).register(self.federation_edus)

    def _build_federation_sender(self) -> None:
        """Outbound transactions (federation/sender/): PDUs of local events and EDUs of local
        changes, per destination, persisted. Only one process sends (`send_federation`): main,
        or the worker named in `federation_sender_instances`; main then writes the EDUs born in
        its own transactions (to-device) to the outbox that worker reads."""
        config = self.config
        self.federation_sender: FederationSender | None = None
        self.federation_outbox: FederationOutbox | None = None  # main, when a worker sends
        self.federation_outbox_reader: OutboxReader | None = None  # that worker
        if config.federation.send_federation and self.runs("federation_sender"):
            sender = self.federation_sender = self._build_outbound_federation()
            if self.role != "main":
                self.federation_outbox_reader = OutboxReader(sender, FederationQueueStore(self.db))
        elif config.federation.send_federation and self.role == "main":
            self.federation_outbox = FederationOutbox(FederationQueueStore(self.db))
            self.to_device.remote_queue = self.federation_outbox
        self.destination_admin = DestinationAdmin(
            DestinationAdminStore(self.db), self.destinations, self.federation_sender
        )

    def _build_outbound_federation(self) -> FederationSender:
        config = self.config
        resolver = DestinationResolver(
            self.state,
            self.events,
            self.memberships,
            server_name=config.server_name,
            domain_whitelist=config.federation_domain_whitelist,
        )
        sender = FederationSender(
            self.db,
            self.bus,
            FederationQueueStore(self.db),
            self.federation_client,
            self.destinations,
            self.events,
            self.state,
            resolver,
            self.clock,
            server_name=config.server_name,
            max_queued_pdus=config.federation.max_queued_pdus,
        )
        self.federation_edus_out = LocalEdus(
            sender,
            self.bus,
            resolver,
            self.clock,
            presence=self.presence if self.presence.enabled else None,
            e2e_keys=self.e2e_keys,
            devices=self.device_store,
        )
        self.to_device.remote_queue = sender
        return sender

    def _build_compliance(self) -> None:
        """Retention (hide, then purge expired events), GDPR erasure and search masking."""
        config = self.config.compliance
        store = ComplianceStore(self.db)
        self.retention = RetentionService(
            config.retention,
            self.jobs,
            store,
            AdminRoomStore(self.db),
            SearchStore(self.db),
            self.events,
            self.state,
            self.media,
            self.clock,
            server_name=self.config.server_name,
            audit=self.admin_audit,
        )
        self.erasure = ErasureService(
            self.db, store, self.users, self.media, self.clock, audit=self.admin_audit
        )
        if config.retention.enabled:
            self.visibility.retention_cutoff = self.retention.cutoff
        self.visibility.erased_senders = self.erasure.erased_among
        self.erasure.erased_hooks.append(self._forget_erased)
        self.accounts.erase_hooks.append(self._erase_deactivated)
        self.search.mask_patterns = [re.compile(p) for p in config.search_mask_patterns]

    async def _erase_deactivated(self, user_id: str, actor: str | None) -> None:
        await self.erasure.erase_user(user_id, actor=actor)

    async def _forget_erased(self, user_id: str) -> None:
        self.push_rules.invalidate(user_id)

    def _build_notifications(self) -> None:
        """Push-rule evaluation at persistence, unread counts in /sync, GET /notifications."""
        self.notifications = NotificationService(
            PushActionStore(self.db), self.push_rules, self.clock, self.config.server_name
        )
        self.persister.batch_hooks.append(self.notifications.on_batch)
        self.persister.abort_hooks.append(self.notifications.on_batch_failed)
        self.bus.subscribe(Stream.EVENTS, self.notifications.on_events)
        self.sync.extensions.append(UnreadCountsExtension(self.notifications))

        async def on_read(user_id: str, room_id: str, thread_id: str | None, _event: str, pos: int) -> None:
            await self.notifications.mark_read(user_id, room_id, pos, thread_id)

        self.receipts.receipt_hooks.append(on_read)
        self.pushers = PusherService(PusherStore(self.db), self.clock, lambda: self.persister.current_stream)
        self.accounts.devices_deleted_hooks.append(self.pushers.on_devices_deleted)
        self.accounts.deactivated_hooks.append(self.pushers.remove_all)
        self._build_push_delivery()

    def _build_push_delivery(self) -> None:
        """HTTP and email pushers delivering the notifications above (docs/push.md)."""
        config = self.config
        tokens = UnsubscribeTokens(bytes(self.signing_key.signing_key))
        self.pushers.unsubscribe_tokens = tokens

        def unsubscribe_url(pusher: Pusher) -> str:
            token = tokens.make(pusher.user_id, pusher.app_id, pusher.pushkey)
            return f"{config.public_baseurl}_synapse/client/unsubscribe?token={token}"

        self.push_http = OutboundClient(
            IPFilter(config.ip_range_blacklist, config.ip_range_whitelist),
            user_agent="homeserver pusher",
            timeout=config.push.gateway_timeout,
            max_redirects=0,
        )
        self.pusher_pool = PusherPool(
            DeliveryDeps(
                store=self.pushers.store,
                actions=self.notifications.store,
                events=self.events,
                state=self.state,
                visibility=self.visibility,
                http=self.push_http,
                clock=self.clock,
                push=config.push,
                email=config.email,
                current_position=lambda: self.bus.positions[Stream.EVENTS],
                remove_pusher=self.pushers.delete,
                unsubscribe_url=unsubscribe_url,
            ),
            enabled=config.push.enabled and self.runs("pusher"),
        )
        self.pushers.changed_hooks.append(self.pusher_pool.on_pusher_changed)
        self.bus.subscribe(Stream.EVENTS, self.pusher_pool.on_events)
        self.receipts.receipt_hooks.append(self.pusher_pool.on_read)

    def _build_client_services(self) -> None:
        """Services behind client endpoints that used to reach stores from their handlers."""
        db, clock = self.db, self.clock
        self.devices = DeviceService(self.device_store)
        self.filters = FilterService(FilterStore(db))
        self.registration_tokens = RegistrationTokenService(RegistrationTokenStore(db), clock)
        self.shared_secret = SharedSecretRegistration(
            NonceStore(db), self.accounts, clock, self.config.registration_shared_secret
        )
        self.notifications_list = NotificationsListService(
            self.notifications.store, self.events, self.serializer
        )
        self.room_reads = RoomReadService(
            self.room_access,
            self.memberships,
            self.events,
            self.serializer,
            state_ids_at=self.state.state_ids_at,
        )
        self.membership.forgotten_hooks.append(self.memberships.mark_forgotten)

    def _build_admin_users(self) -> None:
        """The admin API's user and report services (docs/admin.md); the audit log is built first."""
        self.admin_users = AdminUserService(
            self.db,
            self.admin_user_store,
            self.device_store,
            self.accounts,
            self.auth,
            self.profiles,
            self.restrictions,
            self.audit,
            self.clock,
            self.rooms,
            AccountDataStore(self.db),
            self.client_ips,
            self.media.delete_media,
            server_name=self.config.server_name,
        )
        self.admin_reports = AdminReportService(
            self.db,
            self.report_store,
            self.events,
            self.state,
            self.registration_tokens.store,
            self.audit,
            self.clock,
        )
        self.room_service.creation_checks.append(self._check_not_suspended)
        self.admin_users.emails_changed_hooks.append(self._emails_changed)

    async def _emails_changed(self, user_id: str, emails: list[str]) -> None:
        email = self.config.email
        add = email.enable_notifs and email.notif_for_new_users
        await self.pushers.on_emails_changed(user_id, emails, add_pushers=add)

    async def _check_not_suspended(self, creator: str, _body: dict[str, Any]) -> None:
        await self.restrictions.check_not_suspended(creator)

    def _build_moderation(self) -> None:
        """Room upgrades, content reports, the word filter and the room-creation policy."""
        config, server_name = self.config, self.config.server_name
        self.room_upgrades = RoomUpgradeService(
            self.persister,
            self.state,
            self.rooms,
            self.membership,
            self.account_data,
            self.push_rules,
            self.clock,
            server_name=server_name,
        )
        self.report_store = ReportStore(self.db)
        self.reports = ReportService(
            self.report_store,
            self.events,
            self.rooms,
            self.state,
            self.visibility,
            self.users,
            self.clock,
            server_name=server_name,
        )
        self.content_policy = ContentPolicy(
            config.word_filter, config.room_creation, self.users, self.messages, server_name=server_name
        )
        self.messages.content_checks.append(self.content_policy.check_content)
        self.room_service.creation_checks.append(self.content_policy.check_room_creation)
        if self.role == "main":  # it sends redactions: the writer's job
            self.bus.subscribe(Stream.EVENTS, self.content_policy.on_events)

    def _build_e2ee(self, stream_positions: dict[Stream, int]) -> None:
        """Device keys, cross-signing, device lists, to-device messages and key backups."""
        db, clock, server_name = self.db, self.clock, self.config.server_name
        self.e2e_store = E2eStore(db)
        self.device_lists_stream = StreamIdGenerator(
            Stream.DEVICE_LISTS, stream_positions.get(Stream.DEVICE_LISTS, 0)
        )
        self.to_device_stream = StreamIdGenerator(Stream.TO_DEVICE, stream_positions.get(Stream.TO_DEVICE, 0))
        self.device_lists = DeviceListService(
            db,
            self.e2e_store,
            self.device_lists_stream,
            self.notifier,
            self.memberships,
            self.state,
            self.rooms,
            clock,
            server_name=server_name,
            events_position=stream_positions[Stream.EVENTS],
            bus=self.bus,
        )
        self.bus.subscribe(Stream.EVENTS, self.device_lists.on_events)
        self.e2e_keys = E2eKeysService(
            db, self.e2e_store, self.device_store, self.device_lists, clock, server_name=server_name
        )
        self.to_device = ToDeviceService(
            db,
            self.e2e_store,
            self.device_store,
            self.to_device_stream,
            self.bus,
            clock,
            server_name=server_name,
        )
        self.key_backup = KeyBackupService(db, KeyBackupStore(db))
        self.sync.extensions.append(E2eeSyncExtension(self.e2e_keys, self.to_device, self.device_lists))
        self.accounts.devices_deleted_hooks.append(self.e2e_keys.on_devices_deleted)

    def _build_sliding_sync(self) -> None:
        """Simplified sliding sync (MSC4186) on the /sync machinery."""
        store = SlidingSyncStore(self.db)
        self.room_summaries = RoomSummaryIndex(store)
        self.bus.subscribe(Stream.EVENTS, self.room_summaries.on_events)
        connections = ConnectionStore(store, self.clock.time_ms)
        self.accounts.devices_deleted_hooks.append(connections.forget_devices)
        self.sliding_sync = SlidingSyncService(
            self.sync,
            self.room_summaries,
            self.notifications,
            self.account_data,
            self.receipts,
            self.typing,
            self.to_device,
            self.e2e_keys,
            self.device_lists,
            connections,
        )

    def _build_ephemeral(self, stream_positions: dict[Stream, int]) -> None:
        """Receipts, read markers, typing, presence, room tags and ignored users."""
        db, clock, config = self.db, self.clock, self.config
        self.receipts_stream = StreamIdGenerator(Stream.RECEIPTS, stream_positions.get(Stream.RECEIPTS, 0))
        self.receipt_store = ReceiptStore(db)
        self.receipts = ReceiptService(
            self.receipt_store,
            self.events,
            self.state,
            self.visibility,
            self.account_data,
            self.receipts_stream,
            self.bus,
            clock,
        )
        # In memory only; positions start at the wall clock so they keep growing across restarts.
        # (a worker starts from main's position, learnt in the handshake)
        typing_start = stream_positions.get(Stream.TYPING) or clock.time_ms()
        self.typing = TypingService(self.state, self.bus, start_position=typing_start)
        self.presence_store = PresenceStore(db)
        self.presence = PresenceService(
            self.presence_store,
            self.memberships,
            self.state,
            self.notifier,
            clock,
            self.ratelimiter,
            bucket(config.rc_presence.per_user),
            enabled=bool(getattr(config, "presence_enabled", True)),
            start_position=stream_positions.get(Stream.PRESENCE, 0),
            bus=self.bus,
        )
        self.tags = TagService(self.account_data, self.memberships)
        self.ignore = IgnoreService(self.account_data)
        self.sync.extensions.append(ReceiptsExtension(self.receipts, self.memberships))
        self.sync.extensions.append(TypingExtension(self.typing, self.memberships))
        self.sync.extensions.append(PresenceExtension(self.presence, self.memberships))
        self.sync.extensions.append(IgnoreExtension(self.ignore, self.state))

    def _wire_ephemeral_hooks(self) -> None:
        self.account_data.put_hooks.append(self.ignore.on_account_data)
        self.visibility.ignored_users = self.ignore.ignored_by
        if self.main_client is not None:  # a worker: main owns typing and presence
            started, finished = forward_sync_presence(self.main_client)
            self.sync.started_hooks.append(started)
            self.sync.finished_hooks.append(finished)
            return
        self.bus.subscribe(Stream.EVENTS, self.typing.on_events)
        self.bus.subscribe(Stream.EVENTS, self.presence.on_events)
        self.receipts.activity_hooks.append(self.presence.bump_active)
        self.typing.activity_hooks.append(self.presence.bump_active)
        presence = self.presence

        async def sync_started(req: Any) -> None:
            await presence.sync_started(req.user_id, req.device_id, req.set_presence)

        def sync_finished(req: Any) -> None:
            presence.sync_finished(req.user_id, req.device_id, req.set_presence)

        self.sync.started_hooks.append(sync_started)
        self.sync.finished_hooks.append(sync_finished)

    def _build_search(self) -> None:
        """Server-side search and the user directory; both index inside the event transaction."""
        config = self.config
        self.search = SearchService(
            SearchStore(self.db),
            self.events,
            self.memberships,
            self.visibility,
            self.timeline,
            self.serializer,
            self.state,
            state_ids_at=self.state.state_ids_at,
            current_position=lambda: self.notifier.current.events,
        )
        directory = config.user_directory
        self.user_directory = UserDirectoryService(
            UserDirectoryStore(self.db),
            server_name=config.server_name,
            enabled=directory.enabled,
            search_all_users=directory.search_all_users,
            prefer_local_users=directory.prefer_local_users,
            exclude_remote_users=directory.exclude_remote_users,
        )
        self.persister.batch_hooks.append(self.search.index_batch_txn)
        self.persister.batch_hooks.append(self.user_directory.on_batch_txn)
        self.profiles.changed_hooks.append(self.user_directory.on_profile_changed)
        self.accounts.registered_hooks.append(self.user_directory.on_profile_changed)
        self.accounts.deactivated_hooks.append(self.user_directory.on_deactivated)

    def _wire_metrics(self) -> None:
        """Prometheus families read from live objects (docs/metrics.md)."""
        set_server_name(self.config.server_name)
        self.bus.subscribe(Stream.EVENTS, PersistMetrics(self.state, self.config.server_name).on_events)
        notifier_metrics.listeners.bind(self.notifier, lambda n: n.listeners)
        notifier_metrics.users.bind(self.notifier, lambda n: n.tracked_users)
        bind_pool_gauges(self.db)
        persist_queue_length.bind(
            self.persister, lambda p: sum(len(u.drafts) + len(u.contexts) for u in p._queue)
        )
        presence_pending_writes.bind(self.presence, lambda p: len(p._dirty))
        self.loop_lag = LoopLagMonitor()

    def _may_publish(self, user_id: str, room_id: str, alias: str | None) -> bool:
        return bool(self.config.may_publish_room(user_id, room_id, [alias] if alias else []))

    def _wire_hooks(self) -> None:
        self._subscribe_consumers()
        self.sync.default_global_account_data["m.push_rules"] = self.push_rules.account_data_content
        self.notifier.room_users = self._local_users_to_wake
        self.profiles.changed_hooks.append(self.membership.refresh_profile_in_rooms)
        self.accounts.deactivated_hooks.append(self.membership.leave_all_rooms)
        self._wire_ephemeral_hooks()
        if self.runs("appservice"):
            self.appservice_sender.subscribe()  # last: after the indexes and wake-ups

    def _subscribe_consumers(self) -> None:
        """Stream-bus consumers, called synchronously after each commit in this order: indexes
        and caches first, then the notifier's wake-ups (see state/indexes.py). Services that
        react to events (device lists, notifications, content policy) subscribed while built
        above; typing and presence subscribe after the notifier (_wire_ephemeral_hooks)."""
        bus, notifier = self.bus, self.notifier
        bus.subscribe(Stream.EVENTS, self.room_tails.on_events)  # before room_streams (see it)
        bus.subscribe(Stream.EVENTS, self.room_streams.on_events)
        bus.subscribe(Stream.EVENTS, self.memberships.on_events)
        bus.subscribe(Stream.EVENTS, self.serializer.on_events)
        bus.subscribe(Stream.EVENTS, self.visibility.on_events)
        bus.subscribe(Stream.EVENTS, notifier.on_events)
        bus.subscribe(Stream.ACCOUNT_DATA, notifier.on_account_data)
        bus.subscribe(Stream.RECEIPTS, notifier.on_receipts)
        bus.subscribe(Stream.TYPING, notifier.on_typing)
        bus.subscribe(Stream.PRESENCE, notifier.on_presence)
        bus.subscribe(Stream.TO_DEVICE, notifier.on_to_device)
        bus.subscribe(Stream.DEVICE_LISTS, notifier.on_device_lists)
        # Catch-up after a gap (workers): each stream's rows read back from its store.
        bus.register_source(Stream.EVENTS, self.events.rows_since)
        bus.register_source(Stream.ACCOUNT_DATA, self.account_data_store.rows_since)
        bus.register_source(Stream.RECEIPTS, self.receipt_store.rows_since)
        bus.register_source(Stream.PRESENCE, self.presence_store.rows_since)
        bus.register_source(Stream.DEVICE_LISTS, self.e2e_store.device_list_rows_since)

    def _local_users_to_wake(self, room_id: str) -> list[str]:
        snapshot = self.state.cached(room_id)
        if snapshot is None:
            return []
        suffix = ":" + self.config.server_name
        return [u for u, m in snapshot.memberships.items() if m == "join" and u.endswith(suffix)]

    def runs(self, job: str) -> bool:
        """Whether this process runs `job` ("pusher", "federation_sender", "appservice",
        "background"): its worker
        when the config hands it to one (pusher_instances...), else main."""
        workers = self.config.workers
        handed = {
            "pusher": bool(workers.pusher_instances),
            "federation_sender": bool(workers.federation_sender_instances),
            "appservice": workers.appservice_worker is not None,
            "background": workers.background_worker is not None,
        }[job]
        return self.role == job if handed else self.role == "main"

    async def database_positions(self) -> dict[Stream, int]:
        return await load_stream_positions(self.db)

    @classmethod
    async def create(
        cls, config: HomeserverConfig, *, clock: Clock | None = None, role: str | None = None
    ) -> Services:
        role = role or config.workers.role
        db = await open_database(config.database)
        main_client: MainClient | None = None
        try:
            if role == "main":
                applied = await migrate(db)
                if applied:
                    logger.info("applied %d migration(s)", len(applied))
            elif await pending(db):
                raise SchemaOutdatedError("the database schema is outdated: run `homeserver migrate` first")
            positions = await load_stream_positions(db)
            if role != "main":
                main_client, info = await handshake(config)
                positions[Stream.TYPING] = int(info["typing"]["position"])
            services = cls(
                config, db, clock or Clock(), role, stream_positions=positions, main_client=main_client
            )
            try:
                await services.start()
            except BaseException:
                await services.stop()
                raise
            return services
        except BaseException:
            if main_client is not None:
                await main_client.close()
            await db.close()
            raise

    async def start(self) -> None:
        """Load in-memory state once the schema is current, start background tasks."""
        await self.room_streams.load(self.events)
        positions = {
            Stream.EVENTS: self.persister.current_stream,
            Stream.ACCOUNT_DATA: self.account_data_stream.current,
            Stream.TO_DEVICE: self.to_device_stream.current,
            Stream.DEVICE_LISTS: self.device_lists_stream.current,
            Stream.RECEIPTS: self.receipts_stream.current,
            Stream.TYPING: self.typing.position,
            Stream.PRESENCE: self.presence.position,
        }
        for stream, position in positions.items():
            self.notifier.advance(stream, position)
            self.bus.positions[stream] = position
        if self.main_client is None:
            await self.presence.start()
        await self.search.start()
        await self.restrictions.load()
        if self.runs("background"):
            self.audit.start_retention()
        # Redis: main announces from here on; a worker follows and catches up before it serves.
        self.replication = await start_replication(self, self.main_client)
        if self.role == "main":
            await self.user_directory.start()
            await self._register_appservice_senders()
        if self.runs("appservice"):
            await self.appservice_sender.start()  # after the bus positions, before the persister
        if self.role == "main":  # workers hand every write of events to main
            self.persister.start()
        else:
            self.timeline.backfill = None  # backfilling persists events: main's job
        self.client_ips.start()
        self.loop_lag.start()
        await self.jobs.start()  # after the persister: jobs send events
        await self.pusher_pool.start()
        self.retention.start()
        if self.federation_sender is not None:
            await self.federation_sender.start()
        if self.federation_outbox_reader is not None:
            self.federation_outbox_reader.start()

    async def _register_appservice_senders(self) -> None:
        # Each appservice acts as its `sender_localpart` user, which must exist like any other
        # (profile, memberships); it is created on the first start after the registration is added.
        for service in self.appservices.all():
            if await self.users.get_user(service.sender) is not None:
                continue
            localpart = service.sender[1:].split(":", 1)[0]
            try:
                await self.accounts.register(
                    localpart, None, inhibit_login=True, appservice_id=service.id, validate_localpart=False
                )
            except MatrixError as exc:
                if exc.errcode != "M_USER_IN_USE":  # another process got there first: fine
                    raise

    async def stop(self) -> None:
        if self.replication is not None:
            await self.replication.stop()
        elif self.main_client is not None:
            await self.main_client.close()
        self.loop_lag.stop()
        await self.audit.stop()
        await self.content_policy.drain()
        await self.retention.stop()
        await self.jobs.stop()  # unfinished jobs resume at the next start
        await self.pusher_pool.stop()  # undelivered notifications resume at the next start
        await self.push_http.close()
        await self.persister.stop()
        await self.appservice_sender.stop()  # unacknowledged transactions are resent at the next start
        if self.federation_outbox_reader is not None:
            await self.federation_outbox_reader.stop()
        if self.federation_sender is not None:  # after the persister: its last events get queued
            await self.federation_edus_out.drain()
            await self.federation_sender.stop()
        await self.client_ips.stop()
        self.typing.stop()
        await self.presence.stop()
        await self.media.close()
        await self.federation_client.close()
        await self.sso_http.close()
        await self.appservice_api.close()
        await self.db.close()

    # -- route-declared rate limits ------------------------------------------------------------

    def check_route_ratelimit(
        self, name: str, client_ip: str, requester: Requester | None, access_token: str | None = None
    ) -> None:
        route_limit = ROUTE_RATE_LIMITS[name]
        service = self.appservices.get_by_token(access_token) if access_token else None
        if service is not None and not service.rate_limited:
            return  # as Synapse: requests with a `rate_limited: false` appservice's token are never limited
        if route_limit.by_ip:
            key = client_ip
        elif requester is None:
            return
        else:
            key = requester.user_id
        limit = bucket(route_limit.limit(self.config))
        if name == "message":
            # An admin's per-user override (override_ratelimit) replaces rc_message.
            limit = self.restrictions.message_bucket(key, limit)
        self.ratelimiter.check(route_limit.bucket_name or name, key, limit)
