# One image for every creditflow process:
#   API (default)   tsx src/server.ts
#   worker          tsx src/worker.ts
#   migrations      tsx scripts/migrate.ts
# TypeScript runs through tsx at runtime, so there is no build step and no dist/ that can
# drift from src/. The worker bundles src/workflows itself when it starts.

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only: tsx, drizzle-orm's migrator and the Temporal packages are all
# in "dependencies". Optional dependencies must stay in: esbuild (under tsx) and @swc/core
# (the worker's workflow bundler) ship their native binaries that way.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:20-bookworm-slim
# node_modules/.bin on PATH so commands call tsx directly. Not through npx: on SIGTERM
# `npm exec` exits without passing the signal on, which leaves tsx and the app unaware until
# the container is killed, and the worker never drains. tsx itself relays signals to the app.
ENV NODE_ENV=production \
    PATH=/app/node_modules/.bin:$PATH
WORKDIR /app

# Everything stays owned by root and only readable by the runtime user: the process has no
# business rewriting its own code. tsx keeps its transform cache under /tmp, which `node`
# can write.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json drizzle.config.ts ./
COPY drizzle ./drizzle
COPY scripts ./scripts
COPY src ./src

# The base image's unprivileged user (uid 1000).
USER node

EXPOSE 3000

# No HEALTHCHECK here: the worker runs from this image too and serves no HTTP, so the probe
# on /healthz belongs to the API's service definition (see docker-compose.yml).
# Run under an init (`docker run --init`, `init: true` in compose): it forwards SIGTERM to
# tsx and reaps the processes tsx spawns.
CMD ["tsx", "src/server.ts"]
