"""The document schema of a spec file: pydantic models, and each error as a sentence.

Used by `spec` (the loader) and `spec.resolve`. Field names are snake_case in
Python and camelCase in YAML; unknown keys are errors everywhere, so a typo is
never ignored. A Fabric document never holds a secret: `secret_values` finds
keys that look like one and hold a literal value. `cli.fabric` checks a
`--fabric NAME` with `is_name` and says what is wrong with `invalid_name`.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import pydantic
import pydantic_core
from pydantic.alias_generators import to_camel

API_VERSION = "drctl/v1"
KIND = "RecoveryPlan"
FABRIC_KIND = "Fabric"
# The kinds of fabric a Fabric document can declare: its one key besides `sites`.
FABRIC_KINDS = ("simulator", "asr", "hyperv")
# How the ASR provider authenticates (spec.asr.credential): azure-identity's classes.
ASR_CREDENTIALS = ("default", "cli", "environment", "managedIdentity", "workloadIdentity")
ASR_ENDPOINT = "https://management.azure.com"

DocPath = tuple[str | int, ...]

# Site and fabric names: a fabric's name is a directory (<state-dir>/fabrics/<name>)
# and a job-id prefix (<name>/<job id>), so it holds no separator and is never
# `.` or `..`; sites follow the same rule, so one sentence explains both.
_SITE = r"[A-Za-z0-9][A-Za-z0-9._-]*"
SITE_NAME = rf"^{_SITE}$"
NAME_RULE = "use letters, digits, '.', '_' or '-', starting with a letter or digit"
_NAME = re.compile(_SITE)
_REPLICATION = re.compile(rf"^\s*({_SITE})\s*->\s*({_SITE})\s*$")
# A recovery point that starts like a date is a time, not a point id: a typo
# in it is an error, never an id no recovery point has.
_LOOKS_LIKE_TIME = re.compile(r"^\d{4}-\d\d-\d\d|^\d{8}T\d")
_REVISION = re.compile(r"[0-9a-fA-F]{7,40}")
RECOVERY_POINTS = ("latest", "latestAppConsistent")
TIME_EXAMPLE = "2025-01-31T18:00:00+01:00"


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, strict=False
    )


# A site's or a fabric's name becomes a directory and a metric label; a VM's,
# plan's or group's is printed in every table: each is bounded, and holds no
# character that does not print (a terminal's escape, a newline, a BOM).
MAX_SITE_NAME = 64
MAX_NAME = 255


def _printable(text: str) -> str:
    if not text.isprintable():
        raise pydantic_core.PydanticCustomError(
            "unprintable", "holds a character that does not print"
        )
    return text


SiteName = Annotated[str, pydantic.StringConstraints(pattern=SITE_NAME, max_length=MAX_SITE_NAME)]
FabricName = SiteName
VMName = Annotated[
    str,
    pydantic.StringConstraints(min_length=1, max_length=MAX_NAME, pattern=r"^\S(.*\S)?$"),
    pydantic.AfterValidator(_printable),
]
# A bare `off` is the string "off" in YAML 1.2 and the boolean false in YAML 1.1:
# accept both, so the meaning never depends on which parser read the file.
RawReplication = pydantic.StrictStr | pydantic.StrictBool


# An id or a keyword (a failover job's id, a recovery point's): no space around it.
Token = VMName
# Every duration is bounded: `1e300` or `.inf` would validate, then overflow
# the clock arithmetic of every pass.
MAX_SECONDS = 7 * 24 * 3600
Seconds = Annotated[float, pydantic.Field(ge=0, le=MAX_SECONDS, strict=True, allow_inf_nan=False)]
MAX_PARALLEL = 10_000
MAX_FAILOVERS = 1_000_000


class DataLossScope(Model):
    """`allowDataLoss: {from: SITE, until: TIME}` or `{revision: SHA}`: consent to one event.

    Which keys go together is the resolver's check, so that each wrong
    combination gets its own sentence.
    """

    site: pydantic.StrictStr | None = pydantic.Field(None, alias="from")
    until: pydantic.StrictStr | None = None
    revision: pydantic.StrictStr | None = None


def _data_loss_form(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "scope"
    return None


DATA_LOSS_FORMS = "true, false, {from: SITE, until: TIME} or {revision: SHA}"
# A scope's errors are located under the union's tag (allowDataLoss.scope.from);
# `document_errors` drops the tag, so they read as the file does.
_SCOPE_TAG = "scope"
DataLoss = Annotated[
    Annotated[pydantic.StrictBool, pydantic.Tag("bool")]
    | Annotated[DataLossScope, pydantic.Tag(_SCOPE_TAG)],
    pydantic.Discriminator(
        _data_loss_form,
        custom_error_type="data_loss_form",
        custom_error_message=f"must be {DATA_LOSS_FORMS}",
    ),
]


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
DURATION_RULE = "a duration such as 30m, 1h30m, 90s or a number of seconds, above 0 and at most 7d"


def _duration(value: Any) -> float:
    """`30m`, `1h30m`, `90s` or a number of seconds, as seconds (above 0, at most a week)."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION.match(value.strip())) and value.strip():
        hours, minutes, secs = (int(part or 0) for part in found.groups())
        seconds = float(hours * 3600 + minutes * 60 + secs)
    if seconds is None or not 0 < seconds <= MAX_SECONDS:
        raise pydantic_core.PydanticCustomError("duration", f"must be {DURATION_RULE}")
    return seconds


Duration = Annotated[float, pydantic.BeforeValidator(_duration)]
# Operations whose job is a full copy of the VM: its progress is watched, never timed.
_UNTIMED = ("EnableReplication", "Resync")


class Deadlines(Model):
    """`policy.deadlines`: how long a job of each operation may run before the VM is Stuck."""

    model_config = pydantic.ConfigDict(alias_generator=None, populate_by_name=False)

    planned_failover: Duration | None = pydantic.Field(None, alias="PlannedFailover")
    unplanned_failover: Duration | None = pydantic.Field(None, alias="UnplannedFailover")
    apply_recovery_point: Duration | None = pydantic.Field(None, alias="ApplyRecoveryPoint")
    commit: Duration | None = pydantic.Field(None, alias="Commit")
    reverse_replicate: Duration | None = pydantic.Field(None, alias="ReverseReplicate")
    test_failover: Duration | None = pydantic.Field(None, alias="TestFailover")
    test_failover_cleanup: Duration | None = pydantic.Field(None, alias="TestFailoverCleanup")
    stop_vm: Duration | None = pydantic.Field(None, alias="StopVM")
    start_vm: Duration | None = pydantic.Field(None, alias="StartVM")
    disable_replication: Duration | None = pydantic.Field(None, alias="DisableReplication")

    @pydantic.model_validator(mode="before")
    @classmethod
    def _no_initial_replication(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _UNTIMED:
                if key in data:
                    raise pydantic_core.PydanticCustomError(
                        "untimed",
                        f"{key} has no deadline: it copies the whole VM, and drctl "
                        "watches its progress instead; remove it",
                    )
        return data

    def items(self) -> tuple[tuple[str, float], ...]:
        """(operation as the fabric names it, seconds) for each deadline set."""
        fields = type(self).model_fields
        return tuple((str(fields[name].alias), value) for name, value in self if value is not None)


class Policy(Model):
    """The policy keys a VM entry may set; the plan's `policy:` has a few more."""

    allow_data_loss: DataLoss | None = None
    max_parallel: Annotated[pydantic.StrictInt, pydantic.Field(ge=1, le=MAX_PARALLEL)] | None = None
    settle_seconds: Seconds | None = None
    commit: Literal["auto", "manual"] | None = None
    commit_after_seconds: Seconds | None = None


class PlanPolicy(Policy):
    """`spec.policy`: the VM keys, and those that only make sense for the whole plan."""

    self_heal: pydantic.StrictBool | None = None
    unordered_failover: pydantic.StrictBool | None = None
    reprotect_after_unplanned: Literal["wait", "auto"] | None = None
    deadlines: Deadlines | None = None
    max_failovers_per_revision: (
        Annotated[pydantic.StrictInt, pydantic.Field(ge=1, le=MAX_FAILOVERS)] | None
    ) = None


class Defaults(Model):
    active_site: str | None = None
    replication: RawReplication | None = None


class VMEntry(Model):
    name: VMName
    active_site: str | None = None
    replication: RawReplication | None = None
    policy: Policy | None = None
    commit_approved: Token | None = None
    recovery_point: Token | None = None
    discard_lost_writes: Token | None = None
    confirm_disable_replication: pydantic.StrictBool | None = None
    # The protected item's name (ARM's `name`) when two items share the VM's
    # friendly name; an ASR fabric only (resolve.resolve_fabrics checks it).
    asr_item: Token | None = None


class GroupEntry(Model):
    name: VMName
    after: list[str] = []
    vms: list[str]


Port = Annotated[int, pydantic.Field(ge=1, le=65535, strict=True)]
# A drill keeps its test copies at most a week, like every other duration.
Minutes = Annotated[
    float, pydantic.Field(ge=0, le=MAX_SECONDS / 60, strict=True, allow_inf_nan=False)
]


class HttpProbe(Model):
    port: Port
    path: Annotated[str, pydantic.StringConstraints(pattern=r"^/\S*$")] = "/"


class DrillCheck(Model):
    """`spec.drill.checks[]`: one probe of one VM's test copy, TCP or HTTP."""

    vm: VMName
    tcp: Port | None = None
    http: HttpProbe | None = None
    timeout_seconds: Annotated[
        float, pydantic.Field(gt=0, le=300, strict=True, allow_inf_nan=False)
    ] = 5.0


class DrillBody(Model):
    """`spec.drill`: a test failover of the whole plan; a new `id` requests one."""

    id: Token
    network: Token | None = None
    keep_minutes: Minutes = 30.0
    checks: list[DrillCheck] = []


class PlanBody(Model):
    fabric: FabricName | None = None
    drill: DrillBody | None = None
    sites: list[SiteName]
    defaults: Defaults = Defaults()
    policy: PlanPolicy = PlanPolicy()
    groups: list[GroupEntry] = []
    vms: list[VMEntry]
    commit_approved: Token | None = None
    discard_lost_writes: Token | None = None
    suspend: pydantic.StrictBool | None = None


class Metadata(Model):
    name: VMName


class PlanDocument(Model):
    api_version: Literal["drctl/v1"]
    kind: Literal["RecoveryPlan"]
    metadata: Metadata
    spec: PlanBody


class SimulatorSettings(Model):
    """The embedded simulator needs no settings: its data lives in the state dir."""


class AzureSite(Model):
    """The Azure side of a Hyper-V-to-Azure vault: it has no settings."""


# A host name as WinRM is given it: a DNS name or an address, no scheme, port or path.
HostName = Annotated[
    str, pydantic.StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$", max_length=253)
]
EnvName = Annotated[str, pydantic.StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class FabricSite(Model):
    """One site of a Fabric. A simulated site has no settings; an ASR site names its
    protection container (the friendly name ASR shows for the VMM cloud or Hyper-V
    site) or is the Azure side (`azure: {}`): `spec._load_fabric` checks which."""

    protection_container: VMName | None = None
    azure: AzureSite | None = None
    # A Hyper-V site: the hosts (or cluster nodes) drctl connects to, and the
    # Replica Broker a cluster receives replication through (a name, never a
    # place to run cmdlets).
    hosts: list[HostName] | None = None
    replica_broker: HostName | None = None


_UUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_HTTPS = re.compile(r"https://[^\s/?#]+(/[^\s?#]*)?")


PerSecond = Annotated[float, pydantic.Field(gt=0, le=1e6, strict=False)]


class AsrRates(Model):
    """The client-side token buckets (ARM's own rates when left out)."""

    reads_burst: PerSecond | None = None
    reads_per_second: PerSecond | None = None
    writes_burst: PerSecond | None = None
    writes_per_second: PerSecond | None = None


class AsrSettings(Model):
    """Where the recovery vault is and how to authenticate to it: no secret, ever.

    `credential` names an azure-identity class (ASR_CREDENTIALS), whose own
    sources (environment variables, a managed identity, `az login`) hold the secret.
    """

    subscription_id: str
    resource_group: VMName
    vault: VMName
    endpoint: str = ASR_ENDPOINT
    credential: Literal["default", "cli", "environment", "managedIdentity", "workloadIdentity"] = (
        "default"
    )
    rates: AsrRates | None = None

    @pydantic.field_validator("subscription_id")
    @classmethod
    def _a_uuid(cls, value: str) -> str:
        if not _UUID.fullmatch(value):
            raise pydantic_core.PydanticCustomError(
                "asr_subscription",
                "must be the subscription's id, a UUID like "
                "7f3c2a9e-5b1d-4c8e-9a6f-2d4b8e1c0a53, not {value}",
                {"value": repr(value[:60])},
            )
        return value

    @pydantic.field_validator("endpoint")
    @classmethod
    def _https(cls, value: str) -> str:
        if not _HTTPS.fullmatch(value):
            raise pydantic_core.PydanticCustomError(
                "asr_endpoint",
                "must be an https:// URL of the ARM endpoint (e.g. "
                f"{ASR_ENDPOINT}; TLS verification is always on, a private CA is trusted "
                "through REQUESTS_CA_BUNDLE), not {value}",
                {"value": repr(value[:80])},
            )
        return value.rstrip("/")


class HyperVKerberos(Model):
    """Kerberos with the ticket drctl's own account holds (kinit, a keytab): no settings."""


class HyperVCertificate(Model):
    """WinRM certificate authentication: a client certificate mapped to a local account."""

    pem_file: str
    key_file: str


class HyperVCredential(Model):
    """How drctl authenticates to WinRM: names of environment variables, or no secret at all.

    Exactly one form: usernameEnv + passwordEnv (negotiate), kerberos: {}, or
    certificate: {pemFile, keyFile}; `spec._site_problems` says which is missing.
    """

    username_env: EnvName | None = None
    password_env: EnvName | None = None
    kerberos: HyperVKerberos | None = None
    certificate: HyperVCertificate | None = None


class HyperVLocal(Model):
    """Run PowerShell on this machine (drctl on Windows) instead of WinRM from Python."""

    executable: Literal["pwsh", "powershell.exe"] = "pwsh"


class HyperVTransport(Model):
    """WinRM over HTTPS on 5986 with certificate validation by default."""

    port: Annotated[int, pydantic.Field(ge=1, le=65535)] = 5986
    tls: pydantic.StrictBool = True
    ca_bundle: str | None = None
    insecure_skip_verify: pydantic.StrictBool = False
    auth: Literal["negotiate", "kerberos", "ntlm", "credssp"] | None = None
    # Seconds one script may run before drctl stops it (a Prepare waits for the final sync).
    timeout_seconds: Annotated[float, pydantic.Field(gt=0, le=3600)] = 300
    local: HyperVLocal | None = None


class HyperVSettings(Model):
    """Hyper-V Replica hosts driven over PowerShell Remoting: no secret, ever."""

    credential: HyperVCredential
    transport: HyperVTransport = HyperVTransport()


class FabricBody(Model):
    simulator: SimulatorSettings | None = None
    asr: AsrSettings | None = None
    hyperv: HyperVSettings | None = None
    sites: dict[SiteName, FabricSite]


class FabricMetadata(Model):
    name: FabricName


class FabricDocument(Model):
    api_version: Literal["drctl/v1"]
    kind: Literal["Fabric"]
    metadata: FabricMetadata
    spec: FabricBody

    def kind_keys(self) -> list[str]:
        """The fabric kinds this document sets (exactly one is valid)."""
        return [k for k in FABRIC_KINDS if getattr(self.spec, k) is not None]


def is_name(text: str) -> bool:
    """Whether `text` is a valid site or fabric name (see NAME_RULE)."""
    return _NAME.fullmatch(text) is not None


def invalid_name(what: str, name: object) -> str:
    """The message for a site or fabric `name` that breaks NAME_RULE."""
    return f"{what} name {shown(name)} is not valid: {NAME_RULE}"


# A key names a secret when its last word does: `clientSecret`, `apiKeys`,
# `connectionString`, and `passwordValue` (a trailing `Value` adds nothing).
# Keys are judged by whole words, so `monkey` holds no key, and one that ends
# in another word (`passwordEnv`, `tokenFile`, `keyName`) says where the
# secret is, not what it is. The public half of a key pair is no secret.
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
_SECRET = re.compile(
    r"(^|-)(password|passwd|passphrase|secret|token|credential|key|connection-string)s?"
    r"(-values?)?$"
)
_PUBLIC = re.compile(r"(^|-)(public|host)-keys?$")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def secret_values(node: Any, path: DocPath = ()) -> Iterator[tuple[DocPath, str]]:
    """Every (path, message) under `node` where a key holds a literal secret.

    The message never holds the value: it would reach logs and CI output.
    """
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from secret_values(item, (*path, i))
    elif isinstance(node, dict):
        # The keys of spec.sites are site names, never secrets (a site may be
        # called `key`); what a site holds is checked as everything else.
        names = path == ("spec", "sites")
        for key, value in node.items():
            here = (*path, key)
            problem = None if names or not isinstance(key, str) else _secret_problem(key, value)
            if here == _ASR_CREDENTIAL and problem is not None:
                # Names the kind of credential, never holds one, when it is one of the names.
                problem = None if value in ASR_CREDENTIALS else _CREDENTIAL_NAMES
            if problem is None:
                yield from secret_values(value, here)
            else:
                yield here, problem


_ASR_CREDENTIAL: DocPath = ("spec", "asr", "credential")
_CREDENTIAL_NAMES = (
    f"spec.asr.credential names how drctl authenticates, one of {', '.join(ASR_CREDENTIALS)} "
    "(its value is not shown: it may be a secret, and a Fabric document never holds one; "
    "the credential's own sources, such as environment variables or az login, hold it)"
)


def _secret_problem(key: str, value: Any) -> str | None:
    words = [w.lower() for w in _WORDS.findall(key)]
    literals = list(_literals(value))
    if len(words) > 1 and words[-1] == "env":
        # A reference must be one: a value that is no variable's name is most
        # likely the secret itself, pasted where its variable's name belongs.
        if all(isinstance(v, str) and _ENV_NAME.fullmatch(v) for v in literals):
            return None
        return (
            f"the value of '{key}' looks like a secret value, not the name of an "
            f"environment variable: write the variable's name (letters, digits and '_', "
            f"e.g. {key}: DRCTL_{'_'.join(words[:-1]).upper()}) and put the secret in it"
        )
    joined = "-".join(words)
    if literals and _SECRET.search(joined) and not _PUBLIC.search(joined):
        return _secret_message(key, words)
    return None


def _literals(value: Any) -> Iterator[str | int | float]:
    """The scalars of `value`, in lists too; a mapping's values are judged by their own keys."""
    if isinstance(value, list):
        for item in value:
            yield from _literals(item)
    elif isinstance(value, str | int | float) and not isinstance(value, bool) and str(value):
        yield value


def _secret_message(key: str, words: Sequence[str]) -> str:
    return (
        f"'{key}' holds a literal secret: a Fabric document never holds one (specs live in "
        f"git); reference it instead, e.g. {key}Env: DRCTL_{'_'.join(words).upper()} (an "
        f"environment variable's name) or {key}File: /etc/drctl/{'-'.join(words)} (a "
        "file's path)"
    )


def explain(error: Any, fabric: bool = False) -> str:
    """Turn one pydantic error into a sentence that says what to change."""
    loc = error["loc"]
    where = _dotted(loc) or "document"
    key = str(loc[-1]) if loc else ""
    kind = error["type"]
    if kind == "extra_forbidden" and key == "<<":
        return (
            f"merge keys (<<) are not YAML 1.2, which drctl reads: write the keys of "
            f"{_parent(loc)} out, or set them in spec.defaults or spec.policy"
        )
    if kind == "extra_forbidden" and fabric and len(loc) == 2 and loc[0] == "spec":
        return (
            f"unknown fabric kind '{key}' in spec: a Fabric declares exactly one of "
            f"{', '.join(FABRIC_KINDS)} (and its sites)"
        )
    if kind == "extra_forbidden" and not fabric and (place := _home_of(key, loc[:-1])):
        return f"'{key}' does not go in {_parent(loc)}: set it {place}"
    if kind == "extra_forbidden":
        return f"unknown key '{key}' in {_parent(loc)}: remove it or fix its spelling"
    given = shown(error.get("input"))
    if kind == "data_loss_form":
        return f"{where} must be {DATA_LOSS_FORMS}, not {given}"
    if kind == "greater_than_equal":
        return f"{where} must be {error['ctx']['ge']:g} or more, not {given}"
    if kind == "less_than_equal":
        limit = error["ctx"]["le"]
        days = f" ({limit / 86400:g} days)" if key.endswith("Seconds") else ""
        return f"{where} must be {limit:g}{days} or less, not {given}"
    if kind == "finite_number":
        return f"{where} must be a finite number of seconds, not {given}"
    if kind in {"float_type", "int_type"}:
        wanted = "a number" if kind == "float_type" else "a whole number"
        return f"{where} must be {wanted}, not {given}"
    if kind == "unprintable":
        return f"{where} holds a character that does not print ({given}): remove it"
    if kind == "string_too_long":
        return f"{where} must be at most {error['ctx']['max_length']} characters, not {given}"
    if kind == "bool_type":
        return f"{where} must be true or false, not {given}"
    if kind == "missing":
        return f"missing required key '{key}' in {_parent(loc)}"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{where} must be {expected}, not {given}"
    if kind == "string_pattern_mismatch" and _in_sites(loc):
        return invalid_name("site", error["input"])
    if kind == "string_pattern_mismatch" and _names_fabric(loc, fabric):
        return invalid_name("fabric", error["input"])
    if kind == "string_pattern_mismatch":
        return f"{where} must not be empty or start or end with a space"
    if kind == "string_type":
        return f"{where} must be a string, not {given}: quote it"
    if kind in {"list_type", "model_type", "dict_type"}:
        wanted = "a list" if kind == "list_type" else "a mapping"
        return f"{where} must be {wanted}, not {given}"
    return f"{where}: {error['msg']}"


# Keys of a RecoveryPlan that exist, only elsewhere: say where they go rather
# than call them unknown.
_POLICY_KEYS = frozenset(
    {"allowDataLoss", "maxParallel", "settleSeconds", "commit", "commitAfterSeconds"}
)
_PLAN_POLICY_KEYS = frozenset(
    {
        "selfHeal",
        "unorderedFailover",
        "reprotectAfterUnplanned",
        "deadlines",
        "maxFailoversPerRevision",
    }
)
_VM_KEYS = frozenset({"recoveryPoint", "confirmDisableReplication", "asrItem"})
_VM_OR_PLAN_KEYS = frozenset({"commitApproved", "discardLostWrites"})


def _home_of(key: str, parent: Sequence[str | int]) -> str | None:
    """Where a known key misplaced under `parent` belongs, or None if `key` is unknown."""
    shape = tuple("N" if isinstance(p, int) else p for p in parent)
    vm_entry = shape == ("spec", "vms", "N")
    vm_policy = shape == ("spec", "vms", "N", "policy")
    if key in _PLAN_POLICY_KEYS and (vm_entry or vm_policy):
        return "in spec.policy (it applies to the whole plan)"
    if key in _POLICY_KEYS | _PLAN_POLICY_KEYS and shape in {("spec",), ("spec", "defaults")}:
        return "under spec.policy"
    if key in _POLICY_KEYS and vm_entry:
        return f"under {_dotted(parent)}.policy"
    if key in _VM_KEYS and not vm_entry:
        return "on a VM entry (spec.vms[N])"
    if key in _VM_OR_PLAN_KEYS and shape != ("spec",) and not vm_entry:
        return f"on a VM entry (spec.vms[N]) or at spec.{key} for every VM of the plan"
    return None


def document_errors(exc: pydantic.ValidationError) -> list[Any]:
    """The errors of `exc`, each located as the file reads (no union tags in the path)."""
    found = []
    for error in exc.errors():
        loc = error["loc"]
        if _SCOPE_TAG in loc:
            loc = tuple(
                p
                for i, p in enumerate(loc)
                if not (p == _SCOPE_TAG and i and loc[i - 1] == "allowDataLoss")
            )
        found.append({**error, "loc": loc})
    return found


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60
_SHOWN.maxlist = _SHOWN.maxdict = _SHOWN.maxtuple = _SHOWN.maxset = _SHOWN.maxfrozenset = 3
_SHOWN.maxlevel = 2


def shown(value: object) -> str:
    """`value` as a message quotes it: short, whatever its size (a 200 KB string, a deep list)."""
    return _SHOWN.repr(value)


def _parent(loc: Sequence[str | int]) -> str:
    return _dotted(loc[:-1]) or "the document"


def _dotted(loc: Sequence[str | int]) -> str:
    """A document path as a reader writes it: spec.vms[2].policy."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _in_sites(loc: Sequence[str | int]) -> bool:
    # A Fabric's sites are the keys of a mapping: pydantic locates a bad key
    # as spec.sites.<key>.[key].
    if loc and loc[-1] == "[key]":
        return len(loc) >= 3 and loc[-3] == "sites"
    return len(loc) >= 2 and loc[-2] == "sites"


def _names_fabric(loc: Sequence[str | int], fabric: bool) -> bool:
    """Whether `loc` is a fabric's name: a Fabric's metadata.name, a plan's spec.fabric."""
    return tuple(loc) == (("metadata", "name") if fabric else ("spec", "fabric"))


def parse_replication(raw: str | bool) -> tuple[str, str] | str | None:
    """`a->b` as a pair, off as None; anything else as the message to show."""
    if raw is False or (isinstance(raw, str) and raw.strip() == "off"):
        return None
    if isinstance(raw, str) and (match := _REPLICATION.match(raw)):
        return match.group(1), match.group(2)
    return f"replication must be '<from>-><to>' (e.g. ams->rtm) or off, not {shown(raw)}"


def parse_time(text: str, what: str) -> datetime | str:
    """An ISO 8601 time with a UTC offset; anything else as the message to show."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return f"{what} {shown(text)} is not an ISO 8601 time: write it like {TIME_EXAMPLE}"
    if when.utcoffset() is None:
        return (
            f"{what} {shown(text)} has no UTC offset: add one (e.g. +01:00 or Z), so that it "
            "names the same instant wherever drctl runs"
        )
    return when


def recovery_point_problem(text: str) -> str | None:
    """What is wrong with a `recoveryPoint` value, or None: a keyword, a time or a point id."""
    if text in RECOVERY_POINTS:
        return None
    for keyword in RECOVERY_POINTS:
        if text.lower() == keyword.lower():
            return f"recoveryPoint {shown(text)} must be written {keyword}"
    if _LOOKS_LIKE_TIME.match(text):
        when = parse_time(text, "recoveryPoint")
        return when if isinstance(when, str) else None
    return None  # a recovery point's id, as the fabric lists it


def parse_revision(text: str) -> str | None:
    """A git commit id (7 to 40 hex digits) in lower case, or None if `text` is not one."""
    return text.lower() if _REVISION.fullmatch(text) else None
