"""The releases of a node: an :class:`~vedette.releases.lifecycle.AgentTrack`
and its poller for each agent with a signed ``release``, the local files of the
others (``unsigned = true``), and the live trust of them all — trusted keys and
the revocation list, read again when they change or on SIGHUP
(:class:`~vedette.releases.revocations.TrustWatch`). It is the runtime's
:class:`~vedette.runtime.releases.Releases` (the one seam between deciding and
releasing: docs/architecture.md, "Arrows")."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from vedette.config import Config
from vedette.errors import KeyFileError
from vedette.releases.events import ReleaseEvents
from vedette.releases.lifecycle import AgentTrack, trusted_keys
from vedette.releases.oci import RegistryAuth, Repository
from vedette.releases.poller import Poller
from vedette.releases.repositories import open_repository
from vedette.releases.revocations import TrustWatch, key_ids, load_revocations
from vedette.releases.trust import FLOOR_FILE, TimeFloor
from vedette.runtime.releases import ActiveRelease, LocalReleases


class NodeReleases:
    """The :class:`~vedette.runtime.releases.Releases` of a node: signed OCI
    releases for agents with a ``release``, local files for the others."""

    def __init__(self, config: Config, store: Any, *, start_pollers: bool = True) -> None:
        self.config = config
        self.events = ReleaseEvents(store, config.node_id)
        eval_limit = config.policy.eval_timeout_ms / 1000
        self.tracks: dict[str, AgentTrack] = {}
        # Agents on local files: unsigned, run only with unsigned = true.
        self._local = LocalReleases(
            (agent for agent in config.agents if agent.release is None),
            eval_time_limit_s=eval_limit,
        )
        # Signed agents whose track could not be set up.
        self._failures: dict[str, str] = {}
        self.pollers: list[Any] = []
        skew = config.releases.clock_skew_s
        # One time floor for the node, shared by its tracks.
        self.floor = TimeFloor(
            config.state_dir / "releases" / FLOOR_FILE,
            skew_s=skew,
            persist_interval_s=config.releases.time_floor_interval_s,
        )
        # Read at start like the keys: a list that cannot be read stops the node
        # (RevocationsError), since it could not know what it must refuse.
        self.revocations_path = config.releases.revocations
        self.revocations = load_revocations(self.revocations_path)
        for agent in config.agents:
            if agent.release is None:
                continue
            try:
                trusted = trusted_keys(agent.keys, self.revocations)
                track = AgentTrack(
                    agent, config.state_dir / "releases" / agent.name, trusted, self.events,
                    eval_time_limit_s=eval_limit, floor=self.floor, skew_s=skew,
                )  # fmt: skip
            except Exception as err:  # unreadable keys or folder: deny-all, said why
                self._failures[agent.name] = f"{type(err).__name__}: {err}"
                self.events.emit("release.deny_all", agent.name, reason=str(err))
                continue
            track.revoked = self.revocations.releases
            track.start()
            self.tracks[agent.name] = track
        watched = [path for track in self.tracks.values() for path in track.config.keys]
        if self.revocations_path is not None:
            watched.append(self.revocations_path)
        self.watch = TrustWatch(watched, self.reload_trust)
        if start_pollers:
            self.start_pollers()

    def start_pollers(self) -> None:
        for track in self.tracks.values():
            try:
                source = source_for(track)
            except Exception as err:  # e.g. an unreadable CA file: keep what is persisted
                track.contact_failed(f"{type(err).__name__}: {err}", 0)
                continue
            poller = Poller(track, source)
            if track.reference.kind == "layout" and track.active() is None:
                # A release on this node's own disk: take it before serving, so
                # the agent is not deny-all for the first poll's delay.
                poller.run_once()
            poller.start()
            self.pollers.append(poller)
        self.watch.start()

    def request_reload(self) -> None:
        """Read the trusted keys and the revocation list again (SIGHUP)."""
        self.watch.request()

    def reload_trust(self, cause: str) -> None:
        """Read every agent's keys and the revocation list again and give each
        track its new trust (:meth:`AgentTrack.retrust`). A file that cannot be
        read leaves that trust as it was, recorded as ``keys.reload_failed``."""
        try:
            revocations = load_revocations(self.revocations_path)
        except ValueError as err:  # RevocationsError: keep the list in force
            for name in self.tracks:
                self.events.emit("keys.reload_failed", name, reason=str(err), cause=cause)
            revocations = self.revocations
        listed = str(self.revocations.as_dict()) != str(revocations.as_dict())
        self.revocations = revocations
        for name, track in self.tracks.items():
            try:
                trusted = trusted_keys(track.config.keys, revocations)
            except (KeyFileError, OSError) as err:
                self.events.emit("keys.reload_failed", name, reason=str(err), cause=cause)
                continue
            before, after = key_ids(track.trusted), key_ids(trusted)
            self.events.emit(
                "keys.reloaded", name, cause=cause,
                added=sorted(after - before), removed=sorted(before - after),
                key_ids=sorted(after), revocations=revocations.as_dict() if listed else None,
            )  # fmt: skip
            track.retrust(trusted, revocations.releases, cause)
        for poller in self.pollers:
            if poller.track.active() is None:
                poller.wake()  # a release refused before may verify now

    def bind_metrics(self, registry: CollectorRegistry) -> None:
        self.events.bind(registry)
        self._local.bind_metrics(registry)

    # -- Releases --------------------------------------------------------------------

    def active(self, agent: str) -> ActiveRelease | None:
        track = self.tracks.get(agent)
        if track is not None:
            return track.active()
        return self._local.active(agent)

    def unavailable_reason(self, agent: str) -> str:
        track = self.tracks.get(agent)
        if track is not None:
            return track.unavailable_reason()
        failure = self._failures.get(agent)
        if failure is not None:
            return f"no active release for agent {agent!r}: its release failed to load ({failure})"
        return self._local.unavailable_reason(agent)

    def agents(self) -> list[str]:
        return sorted({*self.tracks, *self._failures, *self._local.agents()})

    def health_state(self, agent: str) -> str:
        track = self.tracks.get(agent)
        if track is not None:
            return track.health()
        if agent in self._failures:
            return "deny_all"
        return self._local.health_state(agent)

    def describe_agent(self, agent: str) -> dict[str, Any]:
        track = self.tracks.get(agent)
        return track.describe() if track is not None else {}

    def close(self) -> None:
        self.watch.stop()
        for poller in self.pollers:
            poller.stop()
        self.pollers.clear()


def source_for(track: AgentTrack) -> Repository:
    agent = track.config
    return open_repository(
        track.reference,
        insecure=agent.insecure,
        ca=agent.ca,
        auth=RegistryAuth.from_environment(agent.username),
    )
