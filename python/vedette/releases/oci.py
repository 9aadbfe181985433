"""A small OCI distribution client (on httpx); image layouts are in ``layout.py``.

Both sources are a :class:`Repository`: resolve a tag to a digest, read and
write manifests and blobs, list referrers. Every byte received is checked
against the digest it was asked for (``OciDigestError``), manifests and blobs
are read against size limits, and every refusal is an :class:`OciError` whose
message says what was asked of whom and what came back.

Registries are spoken to over HTTPS; plain HTTP only when the caller passed
``insecure=True`` (the ``--insecure`` flag). Authentication: anonymous, HTTP
basic, and the bearer-token exchange of the distribution spec
(``WWW-Authenticate: Bearer realm=…,service=…,scope=…``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from vedette.errors import OciError
from vedette.hashing import DigestFormatError, HashRole, HashRoleError, require_role, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST)

# Manifests are small JSON documents; blobs hold agent manifests and bundles.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_BLOB_BYTES = 64 * 1024 * 1024
DEFAULT_TIMEOUT_S = 30.0

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")


class OciDigestError(OciError):
    """Bytes received do not hash to the digest they were fetched by."""

    def __init__(self, message: str, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


def digest_of(data: bytes) -> str:
    return str(sha256(data))


def names_digest(reference: str) -> bool:
    """Whether a manifest reference names a digest (``<algorithm>:<hex>``)
    rather than a tag: only a digest has a ':'. Whether it is a valid one is
    :func:`check_digest`'s to say."""
    return ":" in reference


def is_digest(text: str) -> bool:
    """Whether ``text`` is a valid sha256 content digest (the core's parser)."""
    try:
        check_digest(text)
    except OciError:
        return False
    return True


def check_digest(digest: str) -> str:
    """``digest`` as an OCI digest's text form (the core's parser and the
    ``oci_digest`` hash role); OciError when it is not one."""
    try:
        return str(require_role(digest, HashRole.OCI_DIGEST))
    except (DigestFormatError, HashRoleError):
        raise OciError(f"not a sha256 digest: {digest!r}") from None


def check_tag(tag: str) -> str:
    if not _TAG.match(tag):
        raise OciError(f"not a valid tag: {tag!r}")
    return tag


@dataclass(frozen=True)
class Manifest:
    """A manifest's exact bytes, its media type and digest (the SHA-256 of the bytes)."""

    data: bytes
    media_type: str
    digest: str

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.data)
        except ValueError as err:
            raise OciError(f"manifest {self.digest} is not JSON: {err}") from None
        if not isinstance(value, dict):
            raise OciError(f"manifest {self.digest} is not a JSON object")
        return value


class Repository(Protocol):
    """One repository of a registry, or one OCI image-layout folder."""

    def describe(self) -> str: ...

    def resolve(self, tag: str) -> str | None:
        """The digest the tag points at, or None if there is no such tag."""
        ...

    def get_manifest(self, reference: str) -> Manifest:
        """A manifest by tag or digest; by digest, its bytes are checked against it."""
        ...

    def get_blob(self, digest: str, max_bytes: int = MAX_BLOB_BYTES) -> bytes: ...

    def put_blob(self, data: bytes) -> str: ...

    def put_manifest(self, data: bytes, media_type: str, tag: str | None = None) -> str: ...

    def referrers(self, digest: str) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose ``subject`` is ``digest``."""
        ...


# -- references ----------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """``oci://HOST[:PORT]/REPO:TAG``, ``HOST[:PORT]/REPO:TAG`` (either may end
    ``@sha256:…`` instead of a tag) or ``oci-layout://DIR:TAG``."""

    kind: str  # "registry" or "layout"
    registry: str
    repository: str
    tag: str | None
    digest: str | None
    layout_dir: Path | None = None

    @property
    def reference(self) -> str:
        ref = self.digest or self.tag
        assert ref is not None
        return ref

    def __str__(self) -> str:
        suffix = f"@{self.digest}" if self.digest else f":{self.tag}"
        if self.kind == "layout":
            return f"oci-layout://{self.layout_dir}{suffix}"
        return f"oci://{self.registry}/{self.repository}{suffix}"

    def docker_reference(self) -> str:
        """``HOST/REPO``: what cosign puts in ``docker-reference``."""
        if self.kind == "layout":
            return self.repository
        return f"{self.registry}/{self.repository}"


def parse_reference(text: str) -> Reference:
    """Parse a release reference; raises :class:`OciError` naming what is wrong."""
    if text.startswith("oci-layout://"):
        rest = text[len("oci-layout://") :]
        path, tag, digest = _split_ref(rest, text)
        if not path:
            raise OciError(f"{text!r}: no folder given")
        folder = Path(path).expanduser()
        return Reference("layout", "", folder.name or "layout", tag, digest, folder)
    rest = text[len("oci://") :] if text.startswith("oci://") else text
    name, tag, digest = _split_ref(rest, text)
    host, slash, repository = name.partition("/")
    if not slash or not host or not repository:
        raise OciError(f"{text!r}: expected REGISTRY/REPOSITORY:TAG")
    if not _REPO.match(repository):
        raise OciError(f"{text!r}: {repository!r} is not a valid repository name")
    return Reference("registry", host, repository, tag, digest)


def _split_ref(rest: str, text: str) -> tuple[str, str | None, str | None]:
    if "@" in rest:
        name, _, digest = rest.rpartition("@")
        return name, None, check_digest(digest)
    name, colon, tag = rest.rpartition(":")
    # A colon inside the host (a port) or the path is not a tag separator.
    if not colon or "/" in tag:
        raise OciError(f"{text!r}: no tag given (NAME:TAG or NAME@sha256:…)")
    return name, check_tag(tag), None


# -- registries ----------------------------------------------------------------


@dataclass(frozen=True)
class RegistryAuth:
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_environment(cls, username: str | None = None) -> RegistryAuth:
        """``VEDETTE_REGISTRY_USERNAME`` / ``VEDETTE_REGISTRY_PASSWORD`` unless given."""
        user = username or os.environ.get("VEDETTE_REGISTRY_USERNAME") or None
        password = os.environ.get("VEDETTE_REGISTRY_PASSWORD") if user else None
        return cls(user, password)


class RegistryClient:
    """HTTP access to one registry host, with its auth state and TLS settings."""

    def __init__(
        self,
        host: str,
        *,
        insecure: bool = False,
        ca: str | os.PathLike[str] | None = None,
        auth: RegistryAuth | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_manifest_bytes: int = MAX_MANIFEST_BYTES,
    ) -> None:
        self.host = host
        self.scheme = "http" if insecure else "https"
        self.auth = auth or RegistryAuth()
        self.max_manifest_bytes = max_manifest_bytes
        verify: Any = True
        if ca is not None:
            import ssl

            verify = ssl.create_default_context(cafile=os.fspath(ca))
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s), verify=verify, follow_redirects=True
        )
        self._tokens: dict[str, str] = {}
        self._basic = False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def repository(self, name: str) -> RegistryRepository:
        return RegistryRepository(self, name)

    # The request core: auth retries and error mapping ------------------------

    @contextlib.contextmanager
    def stream(
        self,
        method: str,
        url: str,
        scope: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        ok: tuple[int, ...] = (200,),
        missing_ok: bool = False,
    ) -> Iterator[httpx.Response]:
        if not url.startswith(("http://", "https://")):
            url = f"{self.scheme}://{self.host}{url}"
        for attempt in range(2):
            request_headers = dict(headers or {})
            self._authorize(request_headers, scope)
            try:
                with self._http.stream(
                    method, url, headers=request_headers, content=content
                ) as response:
                    if response.status_code == 401 and attempt == 0:
                        challenge = response.headers.get("www-authenticate", "")
                        response.read()
                        if self._answer_challenge(challenge, scope):
                            continue
                    if missing_ok and response.status_code == 404:
                        yield response
                        return
                    if response.status_code not in ok:
                        raise OciError(self._refusal(method, url, response))
                    yield response
                    return
            except httpx.TimeoutException as err:
                raise OciError(f"{method} {url}: timed out ({type(err).__name__})") from None
            except httpx.HTTPError as err:
                raise OciError(f"{method} {url}: {type(err).__name__}: {err}") from None
        raise OciError(f"{method} {url}: the registry refused the credentials (401)")

    def _authorize(self, headers: dict[str, str], scope: str) -> None:
        token = self._tokens.get(scope)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        elif self._basic and self.auth.username is not None:
            headers["Authorization"] = _basic(self.auth)

    def _answer_challenge(self, challenge: str, scope: str) -> bool:
        kind, _, params_text = challenge.partition(" ")
        if kind.lower() == "basic":
            if self.auth.username is None or self._basic:
                return False
            self._basic = True
            return True
        if kind.lower() != "bearer":
            return False
        params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
        realm = params.get("realm")
        if not realm:
            return False
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        headers = {}
        if self.auth.username is not None:
            headers["Authorization"] = _basic(self.auth)
        try:
            answer = self._http.get(realm, params=query, headers=headers)
        except httpx.HTTPError as err:
            raise OciError(f"token request to {realm}: {type(err).__name__}: {err}") from None
        if answer.status_code != 200:
            raise OciError(f"token request to {realm}: HTTP {answer.status_code}")
        try:
            body = answer.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise OciError(f"token request to {realm}: the answer holds no token")
        self._tokens[scope] = token
        return True

    def _refusal(self, method: str, url: str, response: httpx.Response) -> str:
        body = b""
        with contextlib.suppress(httpx.HTTPError):
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > 512:
                    break
        detail = ""
        try:
            errors = json.loads(body).get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError, TypeError):
            detail = body[:200].decode("utf-8", "replace").strip()
        return f"{method} {url}: HTTP {response.status_code}" + (f" ({detail})" if detail else "")


def _basic(auth: RegistryAuth) -> str:
    pair = f"{auth.username}:{auth.password or ''}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def _read_limited(response: httpx.Response, limit: int, what: str) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise OciError(f"{what}: {declared} bytes is over the {limit}-byte limit")
    data = bytearray()
    try:
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > limit:
                raise OciError(f"{what}: over the {limit}-byte limit")
    except httpx.HTTPError as err:
        raise OciError(f"{what}: {type(err).__name__}: {err}") from None
    return bytes(data)


def _checked(data: bytes, digest: str, what: str) -> bytes:
    actual = digest_of(data)
    if actual != digest:
        raise OciDigestError(f"{what}: content hashes to {actual}, not {digest}", digest, actual)
    return data


class RegistryRepository:
    def __init__(self, client: RegistryClient, name: str) -> None:
        self.client = client
        self.name = name
        self._scope_pull = f"repository:{name}:pull"
        self._scope_push = f"repository:{name}:pull,push"

    def describe(self) -> str:
        return f"{self.client.host}/{self.name}"

    def resolve(self, tag: str) -> str | None:
        url = f"/v2/{self.name}/manifests/{check_tag(tag)}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        with self.client.stream(
            "HEAD", url, self._scope_pull, headers=headers, missing_ok=True
        ) as response:
            if response.status_code == 404:
                return None
            digest: str | None = response.headers.get("docker-content-digest")
        if digest and is_digest(digest):
            return digest
        # No digest header: fetch the manifest and hash what came back.
        return self.get_manifest(tag).digest

    def get_manifest(self, reference: str) -> Manifest:
        by_digest = names_digest(reference)
        ref = check_digest(reference) if by_digest else check_tag(reference)
        url = f"/v2/{self.name}/manifests/{ref}"
        what = f"manifest {self.describe()}:{reference}" if not by_digest else f"manifest {ref}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        with self.client.stream("GET", url, self._scope_pull, headers=headers) as response:
            media_type = response.headers.get("content-type", "").split(";")[0].strip()
            data = _read_limited(response, self.client.max_manifest_bytes, what)
        return _manifest(data, media_type, reference if by_digest else None, what)

    def get_blob(self, digest: str, max_bytes: int = MAX_BLOB_BYTES) -> bytes:
        url = f"/v2/{self.name}/blobs/{check_digest(digest)}"
        with self.client.stream("GET", url, self._scope_pull) as response:
            data = _read_limited(response, max_bytes, f"blob {digest}")
        return _checked(data, digest, f"blob {digest}")

    def has_blob(self, digest: str) -> bool:
        url = f"/v2/{self.name}/blobs/{check_digest(digest)}"
        with self.client.stream("HEAD", url, self._scope_pull, missing_ok=True) as response:
            return response.status_code == 200

    def put_blob(self, data: bytes) -> str:
        digest = digest_of(data)
        if self.has_blob(digest):
            return digest
        url = f"/v2/{self.name}/blobs/uploads/"
        with self.client.stream("POST", url, self._scope_push, ok=(202,)) as response:
            location = response.headers.get("location")
        if not location:
            raise OciError(f"POST {url}: the registry gave no upload location")
        # The location may already carry a query string (distribution does).
        location += ("&" if "?" in location else "?") + f"digest={digest}"
        if location.startswith("/"):
            location = f"{self.client.scheme}://{self.client.host}{location}"
        headers = {"Content-Type": "application/octet-stream"}
        with self.client.stream(
            "PUT", location, self._scope_push, headers=headers, content=data, ok=(201, 204)
        ):
            pass
        return digest

    def put_manifest(self, data: bytes, media_type: str, tag: str | None = None) -> str:
        digest = digest_of(data)
        ref = check_tag(tag) if tag else digest
        url = f"/v2/{self.name}/manifests/{ref}"
        headers = {"Content-Type": media_type}
        with self.client.stream(
            "PUT", url, self._scope_push, headers=headers, content=data, ok=(201, 202, 204)
        ) as response:
            given = response.headers.get("docker-content-digest")
        if given and given != digest:
            raise OciError(f"PUT {url}: the registry stored {given}, not {digest}")
        return digest

    def referrers(self, digest: str) -> list[dict[str, Any]]:
        url = f"/v2/{self.name}/referrers/{check_digest(digest)}"
        headers = {"Accept": OCI_INDEX}
        with self.client.stream(
            "GET", url, self._scope_pull, headers=headers, missing_ok=True
        ) as response:
            found = response.status_code == 200
            media_type = response.headers.get("content-type", "").split(";")[0].strip()
            data = _read_limited(response, self.client.max_manifest_bytes, f"referrers of {digest}")
        if found and media_type == OCI_INDEX:
            return _index_entries(data, f"referrers of {digest}")
        # No referrers API (distribution 2.8): the tag schema fallback.
        return fallback_referrers(self, digest)


def fallback_referrers(repo: Repository, digest: str) -> list[dict[str, Any]]:
    """The referrers tag schema: an index tagged ``sha256-<hex>``."""
    tag = digest.replace(":", "-")
    if repo.resolve(tag) is None:
        return []
    index = repo.get_manifest(tag)
    if index.media_type != OCI_INDEX:
        return []
    return _index_entries(index.data, f"referrers index {tag}")


def _index_entries(data: bytes, what: str) -> list[dict[str, Any]]:
    try:
        index = json.loads(data)
        entries = index["manifests"]
    except (ValueError, KeyError, TypeError):
        raise OciError(f"{what}: not an OCI image index") from None
    if not isinstance(entries, list):
        raise OciError(f"{what}: 'manifests' is not a list")
    return [entry for entry in entries if isinstance(entry, dict)]


def _manifest(data: bytes, media_type: str, digest: str | None, what: str) -> Manifest:
    if media_type not in MANIFEST_TYPES:
        # Some registries answer a generic type; then the document must say.
        try:
            declared = json.loads(data).get("mediaType")
        except (ValueError, AttributeError):
            declared = None
        if media_type not in ("", "application/json", "application/octet-stream") or (
            declared not in MANIFEST_TYPES
        ):
            raise OciError(f"{what}: unexpected content type {media_type!r}")
        media_type = declared
    if digest is not None:
        _checked(data, digest, what)
    return Manifest(data, media_type, digest_of(data))


def copy_artifact(
    source: Repository, target: Repository, digest: str, max_blob_bytes: int = MAX_BLOB_BYTES
) -> None:
    """Copy the manifest ``digest`` with its config and layers (one level deep)."""
    manifest = source.get_manifest(digest)
    document = manifest.json()
    descriptors = [document.get("config"), *(document.get("layers") or [])]
    for descriptor in descriptors:
        if not isinstance(descriptor, dict):
            continue
        blob_digest = descriptor.get("digest")
        if isinstance(blob_digest, str):
            if blob_digest == EMPTY_DIGEST:
                target.put_blob(b"{}")
                continue
            target.put_blob(source.get_blob(blob_digest, max_blob_bytes))
    target.put_manifest(manifest.data, manifest.media_type)


EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
