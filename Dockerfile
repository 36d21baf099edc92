# One image for every creditflow process, running the compiled build (`npm run build`) on plain
# node — no TypeScript loader at runtime:
#   API (default)   node dist/src/server.js
#   worker          node dist/src/worker.js     (runs the prebundled dist/workflow-bundle.js)
#   migrations      node dist/scripts/migrate.js [--app-login]
# e.g. `docker run --init creditflow node dist/src/worker.js`. Worker versioning settings
# (WORKER_BUILD_ID, WORKER_VERSIONING) come from the environment: README, "Rolling out a new
# worker version".

# Build: all dependencies (typescript, tsx, the workflow bundler), then compile and prebundle.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts/patch-deps.js ./scripts/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build

# Production dependencies only. Optional dependencies must stay in: @swc/core and the Temporal
# core bridge ship their native binaries that way.
# The install's postinstall step (scripts/patch-deps.js) guards postgres.js against a crash on a
# dropped connection; it must run here too.
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts/patch-deps.js ./scripts/
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:20-bookworm-slim
# Stack traces point at the TypeScript sources through the build's source maps.
ENV NODE_ENV=production \
    NODE_OPTIONS=--enable-source-maps
WORKDIR /app

# Everything stays owned by root and only readable by the runtime user: the process has no
# business rewriting its own code. package.json gives the worker its version (the default
# build id); drizzle/ holds the migrations, found beside dist/.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY drizzle ./drizzle
COPY --from=build /app/dist ./dist

# The base image's unprivileged user (uid 1000).
USER node

EXPOSE 3000

# No HEALTHCHECK here: the worker runs from this image too and serves no HTTP, so the probe
# on /healthz belongs to the API's service definition (see docker-compose.yml).
# Run under an init (`docker run --init`, `init: true` in compose): it forwards SIGTERM to
# node, and the worker drains before it exits. node directly, not `npm run`: npm does not
# pass SIGTERM on.
CMD ["node", "dist/src/server.js"]
