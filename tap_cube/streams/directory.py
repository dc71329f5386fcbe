"""What the run reads: the campaigns this user can see, and the data owners' CRMs.

Looked up once per run, from /campaigns, when discover_crms is on; the streams of data
owners and of campaigns take their partitions from here. Which streams are offered at
all follows from the settings each needs (`Need`).
"""

from __future__ import annotations

import json
import typing as t
from functools import cached_property

from tap_cube.errors import ConfigError, InaccessibleError
from tap_cube.settings import Settings

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Iterable, Mapping

CRM_TYPES = ("B2C", "B2B")

#: A setting a stream needs set to be offered; "crms" is met by discovered CRMs too.
Need = t.Literal["assignment_ids", "crms", "start_date"]

#: How messages name what meets each need.
NEED_WORDS: dict[Need, str] = {
    "assignment_ids": "assignment_ids",
    "crms": "crms or discover_crms",
    "start_date": "start_date",
}


def discovers_crms(config: Mapping[str, t.Any]) -> bool:
    """Whether the data owners to read are found in /campaigns rather than listed in crms.

    discover_crms says so; left out, it is on when nothing else says what to read, so
    that a URL and a token read everything the user may see on a current server.
    """
    settings = Settings(config)
    if settings.discover_crms is None:
        return not settings.assignment_ids and not settings.crms
    return settings.discover_crms


def reads_crms(config: Mapping[str, t.Any]) -> bool:
    """Whether data owners' CRMs are read: listed in crms, or discovered."""
    return discovers_crms(config) or bool(Settings(config).crms)


def meets(config: Mapping[str, t.Any], needs: Iterable[Need]) -> bool:
    """Whether the configuration sets everything in `needs`."""
    settings = Settings(config)
    return all(
        reads_crms(config) if need == "crms" else bool(settings.given(need)) for need in needs
    )


def describe_needs(needs: Iterable[Need]) -> str:
    """`needs` as a message says them: "start_date, and crms or discover_crms"."""
    return ", and ".join(NEED_WORDS[need] for need in needs)


class Directory:
    """The campaigns this user can see, and the data owners' CRMs to read; looked up once."""

    def __init__(
        self,
        config: Mapping[str, t.Any],
        read_campaigns: Callable[[], list[dict[str, t.Any]]],
        logger: logging.Logger,
    ) -> None:
        """`read_campaigns`: the rows of /campaigns, read when first needed."""
        self._settings = Settings(config)
        self._read_campaigns = read_campaigns
        self._logger = logger
        self.discovering = discovers_crms(config)
        #: The CRMs warned about as no longer found (`warn_vanished`).
        self._vanished: set[tuple[int, str]] = set()

    @property
    def finds_campaigns(self) -> bool:
        """Whether the campaigns read include those found for discovered CRMs, rather
        than only those campaign_ids lists."""
        return self.discovering and not self._settings.campaign_ids

    @cached_property
    def campaign_rows(self) -> list[dict[str, t.Any]]:
        return self._read_campaigns()

    @cached_property
    def crms(self) -> list[dict[str, t.Any]]:
        """{"data_owner_id", "crm_type"} of every CRM to read, configured or discovered."""
        if not self.discovering:
            return [
                {"data_owner_id": int(crm["data_owner_id"]), "crm_type": str(crm["crm_type"])}
                for crm in self._settings.crms
            ]
        try:
            rows = self.campaign_rows
        except InaccessibleError as exc:
            msg = (
                f"cannot discover data owners: /campaigns answered {exc.status} to this "
                'user; list them in crms instead, e.g. [{"data_owner_id": 3, "crm_type": "B2C"}]'
            )
            raise ConfigError(msg) from None
        logger = self._logger
        pairs: set[tuple[int, str]] = set()
        for row in rows:
            owner, crm_type = _owner_id(row), str(row.get("campaign__crm_type")).upper()
            if row.get("data_owner__id") in (None, ""):
                continue  # an assignment-era campaign
            if owner is None or crm_type not in CRM_TYPES:
                logger.warning(
                    "discover_crms: campaign %s names data owner %r with CRM type %r; it is "
                    "left out (list it in crms to read it)",
                    row.get("campaign__id"),
                    row.get("data_owner__id"),
                    row.get("campaign__crm_type"),
                )
                continue
            pairs.add((owner, crm_type))
        if not pairs:
            msg = (
                f"discover_crms: none of the {len(rows)} campaigns this user can see names a "
                "data owner and CRM type; on a server of the assignment era set "
                "assignment_ids, else ask Headshed for access to a data owner"
            )
            raise ConfigError(msg)
        found = [{"data_owner_id": owner, "crm_type": kind} for owner, kind in sorted(pairs)]
        logger.info(
            "discover_crms: /campaigns names %d data-owner CRMs; crms: %s",
            len(found),
            json.dumps(found),
        )
        return found

    def warn_vanished(self, bookmarks: Mapping[str, t.Any]) -> None:
        """A WARNING, once per run, for each data owner's CRM whose partitions the state
        (`bookmarks`, by stream) holds, but that discovery no longer finds.

        Nothing reads it any more, so nothing marks its rows deleted: they would stay
        live for good, unseen. Whether it is gone or only has no campaign now, only the
        user can tell.
        """
        if not self.discovering:
            return
        found = {(crm["data_owner_id"], crm["crm_type"]) for crm in self.crms}
        streams_of: dict[tuple[int, str], list[str]] = {}
        for stream, stream_state in sorted(bookmarks.items()):
            for pair in _crms_in(stream_state):
                if pair not in found and pair not in self._vanished:
                    streams_of.setdefault(pair, []).append(stream)
        self._vanished |= streams_of.keys()
        for (owner, crm_type), streams in sorted(streams_of.items()):
            self._logger.warning(
                "discover_crms: data owner %d (%s) is no longer named in /campaigns, yet the "
                "state holds its partitions of %s: it is not read, and its rows stay live. "
                "To read it still, set crms to the CRMs to read, with it; if it is gone and its "
                "rows should go, "
                "mark them deleted in the target (rows WHERE data_owner_id = %d AND "
                "crm_type = '%s') and remove its partitions from the state (see "
                "docs/deletions.md)",
                owner,
                crm_type,
                ", ".join(streams),
                owner,
                crm_type,
            )

    def campaign_ids(self, *, of_assignments: bool) -> list[int]:
        """campaign_ids, or every campaign of the configured assignments and of the CRMs."""
        if self._settings.campaign_ids:
            return self._settings.campaign_ids
        assignments = set(self._settings.assignment_ids) if of_assignments else set()
        crms = {(crm["data_owner_id"], crm["crm_type"]) for crm in self.crms}
        owners = {owner for owner, _ in crms}
        ids: list[int] = []
        for row in self.campaign_rows:
            owner, crm_type = _owner_id(row), row.get("campaign__crm_type")
            ours = (
                (owner, str(crm_type).upper()) in crms if crm_type else owner in owners
            ) or row.get("assignment__id") in assignments
            if ours:
                ids.append(int(row["campaign__id"]))
        return ids


def _crms_in(stream_state: object) -> Iterable[tuple[int, str]]:
    """The (data owner, CRM type) pairs of a stream's partitions in a state."""
    partitions = stream_state.get("partitions") if isinstance(stream_state, dict) else None
    for partition in partitions if isinstance(partitions, list) else ():
        context = partition.get("context") if isinstance(partition, dict) else None
        if isinstance(context, dict) and set(context) == {"data_owner_id", "crm_type"}:
            owner, crm_type = context["data_owner_id"], context["crm_type"]
            if type(owner) is int and isinstance(crm_type, str):
                yield owner, crm_type


def _owner_id(campaign: dict[str, t.Any]) -> int | None:
    """A campaign row's data owner id, whether sent as a number or as digits."""
    owner = campaign.get("data_owner__id")
    return int(str(owner)) if str(owner).isdigit() else None
