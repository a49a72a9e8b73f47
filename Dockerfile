# syntax=docker/dockerfile:1
# chat-server: a self-contained binary on a distroless base.
#   docker build -t chat-server .
#   docker run --rm -p 8080:8080 --stop-timeout 15 -e API_KEY=... chat-server
# Configuration comes from the environment at run time; nothing secret is baked in.

# --- build: the same Bun as the `bun` devDependency in package.json (test/deploy/deploy.test.ts checks) ---
FROM oven/bun:1.4.5 AS build
WORKDIR /src
# Dependencies first, so a source change does not reinstall them. --frozen-lockfile fails
# when package.json and package-lock.json disagree (the `npm ci` guarantee).
COPY package.json package-lock.json bunfig.toml ./
RUN bun install --frozen-lockfile --production
# The rest of the context (.dockerignore keeps out .env, node_modules, tests, docs).
COPY . .
# package.json's build script: bun build --compile ... --outfile dist/chat-server
RUN bun run build && ./dist/chat-server --version

# --- runtime: glibc and libstdc++ only, no shell, no package manager ---
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
WORKDIR /app
COPY --from=build /src/dist/chat-server /app/chat-server
ENV APP_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
# distroless "nonroot" (uid/gid 65532)
USER 65532:65532
EXPOSE 8080
# No curl or wget here: the binary probes its own /healthz on HOST/PORT and exits 0/1.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/app/chat-server", "--healthcheck"]
# SIGTERM drains (close 1001) within SHUTDOWN_GRACE_S (default 10 s): give `docker stop`
# more than that, e.g. `--stop-timeout 15` or compose `stop_grace_period: 15s`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/chat-server"]
