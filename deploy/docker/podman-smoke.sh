#!/bin/sh
# Build the image for real with Debian's podman where Docker Hub cannot be reached, then run it and check it:
# the base image is made from Debian's own packages (debootstrap: bookworm, python3 3.11, python3-venv) and
# passed as BASE_IMAGE. Needs root, podman, runc and debootstrap (apt-get install podman runc debootstrap).
#   deploy/docker/podman-smoke.sh            (from the repository root; ~5 min the first time)
# What it checks: the build succeeds; the container runs as uid 10001 with tini as PID 1; /health answers; the
# config mounted at /etc/sluice/sluice.yaml is the one served; the data volume is written as uid 10001 (the key
# pepper); Docker's HEALTHCHECK command passes (podman healthcheck run); SIGTERM (podman stop) ends it with status 0.
# Machine specifics are in variables: WORK (cache dir), MIRROR, CA_BUNDLE (the host's CA bundle, copied into the
# base so pip and poetry trust an intercepting proxy), PORT.
set -eu
work=${WORK:-/var/tmp/sluice-podman}
mirror=${MIRROR:-http://deb.debian.org/debian}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
port=${PORT:-18080}
base=localhost/sluice-base:bookworm
image=localhost/sluice:smoke
name=sluice-smoke-$$
# This sandbox's limits: no systemd cgroups, a low hard RLIMIT_NOFILE, crun refusing hybrid cgroups.
run_opts="--runtime runc --cgroup-manager cgroupfs"
ulimits="--ulimit nofile=4096:4096 --ulimit nproc=4096:4096"

if ! podman image exists "$base"; then
  rm -rf "$work/rootfs"
  mkdir -p "$work"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$work/rootfs" "$mirror"
  cp "$ca_bundle" "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/archives/"*.deb
  tar -C "$work/rootfs" -c . | podman import \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' - "$base"
fi

podman build --format docker --isolation chroot --network host --build-arg BASE_IMAGE="$base" \
  --build-arg SLUICE_BUILD=podman-smoke -t "$image" .

# The config mounted where the image looks for it, and the data dir as a named volume.
mkdir -p "$work/config"
printf '%s\n' 'providers: {mock: {type: mock}}' 'models: [{name: smoke-model, provider: mock, model: mock-1}]' \
  > "$work/config/sluice.yaml"
podman volume rm -f "$name-data" >/dev/null 2>&1 || true
# shellcheck disable=SC2086
podman $run_opts run -d --name "$name" --network host $ulimits \
  -v "$work/config/sluice.yaml:/etc/sluice/sluice.yaml:ro" -v "$name-data:/var/lib/sluice" \
  -e SLUICE_API_KEYS=sk-smoke -e SLUICE_PORT="$port" -e SLUICE_HOST=127.0.0.1 "$image"
trap 'podman $run_opts rm -f "$name" >/dev/null 2>&1 || true; podman volume rm -f "$name-data" >/dev/null 2>&1 || true' EXIT
i=0
until python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=2)" 2>/dev/null; do
  i=$((i + 1))
  if [ "$i" -gt 60 ]; then podman $run_opts logs "$name"; echo "smoke: /health never answered" >&2; exit 1; fi
  sleep 1
done
python3 -c "import json, urllib.request; print(json.load(urllib.request.urlopen('http://127.0.0.1:$port/health')))"
test "$(podman $run_opts exec "$name" id -u)" = 10001
test "$(podman $run_opts exec "$name" cat /proc/1/comm)" = tini
python3 - "$port" <<'PY'
import json, sys, urllib.request
request = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/models", headers={"Authorization": "Bearer sk-smoke"})
models = [m["id"] for m in json.load(urllib.request.urlopen(request))["data"]]
assert models == ["smoke-model"], models  # the mounted /etc/sluice/sluice.yaml
PY
podman $run_opts exec "$name" sh -c 'test -s /var/lib/sluice/key-pepper && test "$(stat -c %u /var/lib/sluice/key-pepper)" = 10001'
podman $run_opts healthcheck run "$name"
podman $run_opts stop -t 40 "$name" >/dev/null
status=$(podman $run_opts inspect "$name" --format '{{.State.ExitCode}}')
test "$status" = 0 || { podman $run_opts logs "$name"; echo "smoke: exit status $status after SIGTERM" >&2; exit 1; }
echo "smoke: image $image built; as uid 10001 under tini it served /health and the mounted config's model, wrote its" \
  "data volume, passed its HEALTHCHECK and stopped with status 0 on SIGTERM"
