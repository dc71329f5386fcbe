"""How a stream's list is split: per assignment, per data owner's CRM, per campaign, or
not at all; what each partition is called, which fields it adds to every record, and
which settings must be set for there to be any.

Cube groups customers in two generations of containers: assignments (`assignment_ids`)
and, on current servers, a data owner's B2C or B2B CRM (`crms`, or discovered from
/campaigns). Call outcomes and product registrations are read per campaign too.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, replace

from tap_cube.settings import Settings

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from tap_cube.streams.directory import Directory, Need

#: The partitions of a configuration: the run's settings, and what /campaigns found.
Contexts = t.Callable[[Settings, "Directory"], list[dict[str, t.Any]]]


@dataclass(frozen=True)
class Partitions:
    """One way of splitting a list into partitions."""

    #: How messages name a partition: "assignment 7", "data owner 3 (B2C)".
    label: str
    #: The setting that chooses the partitions, for messages about one of them.
    setting: str
    #: The partition's fields, which the SDK adds to every record from its context.
    key_schema: Mapping[str, dict[str, t.Any]]
    #: What the configuration must set for there to be partitions of this kind.
    needs: tuple[Need, ...]
    #: The partitions to read; None: one, the whole list (the SDK's default).
    contexts: Contexts | None
    #: Whether the partitions were found in /campaigns rather than named by `setting`:
    #: then one the user may not read (403 or 404) is skipped with a warning, since the
    #: user did not name it and /campaigns lists data some users cannot see.
    found: Callable[[Directory], bool] | None = None
    #: How messages name the setting when the partitions were found.
    found_setting: str = ""
    #: Whether the stream warns, as it starts to read, of data owners the state knows
    #: that discovery no longer finds (`Directory.warn_vanished`).
    warns_vanished: bool = False

    def setting_for(self, directory: Directory | None) -> str:
        """How messages name the setting that chose this run's partitions."""
        found = directory is not None and self.found is not None and self.found(directory)
        return self.found_setting if found else self.setting


def _assignments(settings: Settings, directory: Directory) -> list[dict[str, t.Any]]:
    return [{"assignment_id": i} for i in settings.assignment_ids]


def _crms(settings: Settings, directory: Directory) -> list[dict[str, t.Any]]:
    return [dict(crm) for crm in directory.crms]


def _campaigns(*, of_assignments: bool) -> Contexts:
    def contexts(settings: Settings, directory: Directory) -> list[dict[str, t.Any]]:
        ids = directory.campaign_ids(of_assignments=of_assignments)
        return [{"campaign_id": i} for i in ids]

    return contexts


def _discovering(directory: Directory) -> bool:
    return directory.discovering


def _finding_campaigns(directory: Directory) -> bool:
    return directory.finds_campaigns


#: Once per configured assignment.
ASSIGNMENTS = Partitions(
    label="assignment",
    setting="assignment_ids",
    key_schema={"assignment_id": {"type": "integer"}},
    needs=("assignment_ids",),
    contexts=_assignments,
)
#: Once per data owner and CRM type, configured or discovered.
DATA_OWNERS = Partitions(
    label="data owner",
    setting="crms",
    key_schema={"data_owner_id": {"type": "integer"}, "crm_type": {"type": "string"}},
    needs=("crms",),
    contexts=_crms,
    found=_discovering,
    found_setting="crms (found in /campaigns; set crms to choose)",
    warns_vanished=True,
)
#: Once per campaign: campaign_ids, or the campaigns of the assignments and CRMs read.
CAMPAIGNS = Partitions(
    label="campaign",
    setting="campaign_ids",
    key_schema={"campaign_id": {"type": "integer"}},
    needs=(),
    contexts=_campaigns(of_assignments=True),
    found=_finding_campaigns,
    found_setting="campaign_ids (found in /campaigns; set it to choose)",
)
#: Once per campaign of a data owner: campaign_ids, or the campaigns of the CRMs read.
DATA_OWNERS_CAMPAIGNS = replace(
    CAMPAIGNS, needs=("crms",), contexts=_campaigns(of_assignments=False)
)
#: Not split: the whole list at once.
WHOLE = Partitions(
    label="partition",
    setting="the tap-cube settings",
    key_schema={},
    needs=(),
    contexts=None,
)
