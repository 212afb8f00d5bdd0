# syntax=docker/dockerfile:1
# vectisd image. Build: docker build -t registry.example.com/vectis:0.1.0 .
#
# Node 26 is the Active LTS line on the release date of this file (24 moved to Maintenance LTS on 2026-10-20);
# `--build-arg NODE_VERSION=24` builds on the previous line. Both stages use the same base so the native module
# (better-sqlite3) is compiled against the exact Node ABI and glibc it runs with.
ARG NODE_VERSION=26

# ---------------------------------------------------------------- build: compile TypeScript and the native module
FROM node:${NODE_VERSION}-slim AS build
WORKDIR /src
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# Scripts off: `prepare` would compile sources that are not copied yet. better-sqlite3 is then built from source
# here, with the toolchain above, instead of downloading a prebuilt binary at install time. Its installer
# (prebuild-install) reads npm_config_build_from_source from the environment itself; npm warns that it does not know
# that setting, which is true and harmless.
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm_config_build_from_source=true npm rebuild better-sqlite3
COPY tsconfig.json tsconfig.build.json ./
# The source folders, in layer order (README, "Layout"): each may import only the ones above it here.
COPY common ./common
COPY store ./store
COPY cluster ./cluster
COPY k8s ./k8s
COPY transfer ./transfer
COPY daemon ./daemon
COPY dev-cluster ./dev-cluster
COPY cli ./cli
COPY bin ./bin
# The web console (browser code, outside the layer order): bundled by esbuild into dist/console, served by every member.
COPY console ./console
# Of the native module's build, only build/Release/better_sqlite3.node is loaded at run time: its sources, objects and
# static library (about 27 MB) stay here.
RUN npx tsc -p tsconfig.build.json \
 && node console/build.mjs \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 && cd node_modules/better-sqlite3 \
 && find build -mindepth 1 -not -path build/Release -not -path build/Release/better_sqlite3.node -delete \
 && rm -rf deps src

# ---------------------------------------------------------------- runtime: production dependencies only, no toolchain
FROM node:${NODE_VERSION}-slim AS runtime
ENV NODE_ENV=production \
    VECTIS_DATA_DIR=/var/lib/vectis \
    VECTIS_SHARED_DIR=/srv/vectis/shared
WORKDIR /app
# Owned by root and read-only to the service user: the image works with readOnlyRootFilesystem.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
RUN mkdir -p /var/lib/vectis /srv/vectis/shared \
 && chown 10001:10001 /var/lib/vectis /srv/vectis/shared
# A numeric non-root user, so Kubernetes' runAsNonRoot can verify it without an /etc/passwd lookup.
USER 10001:10001
EXPOSE 5000 7800 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.VECTIS_HTTP_PORT || '8080') + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
# Exec form, no shell and no wrapper: node is PID 1 and gets SIGTERM itself, so the daemon's hand-over runs on
# `kubectl delete pod` / rolling updates. vectisd spawns no children, so there are no zombies to reap.
ENTRYPOINT ["node", "--enable-source-maps", "/app/dist/bin/vectisd.js"]
