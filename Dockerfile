# realm-operator image. `make image` (hack/kind/images.sh operator) lays out this Dockerfile's
# build context from artifacts built on the host: dist/ (`npm run build`), crds/, package.json,
# package-lock.json and node_modules.tar (a production-only `npm ci --omit=dev --ignore-scripts`).
# No npm inside the build, so it needs no registry access from containers, and the legacy
# builder (DOCKER_BUILDKIT=0) is enough. To lay out a context yourself:
#   hack/kind/images.sh operator-context DIR && docker build DIR
#
# One image, every role (src/cli/main.ts): operator (default), realm-server, migrate,
# seed-sample. Non-root (65532), nothing written to the image's file system at run time, so it
# runs with readOnlyRootFilesystem.
#
# NODE_IMAGE: node:24-bookworm-slim from a registry, or the locally built drop-in
# realm-operator/node:24-bookworm (what hack/kind/images.sh passes; see docs/kind.md).
ARG NODE_IMAGE=node:24-bookworm-slim
FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# node_modules.tar: the production node_modules as one archive (ADD unpacks it into /app).
ADD node_modules.tar ./
COPY crds ./crds
COPY dist ./dist
USER 65532:65532
# The operator command runs with src/cli/node-flags.ts's OPERATOR_NODE_FLAGS (V8's optimizing
# compilers off: a third less peak memory; see docs/memory.md), which NODE_OPTIONS may not carry; other roles
# with Node's defaults. `exec`: node is PID 1 and gets the signals. test/unit/node-flags.test.ts runs this line.
ENTRYPOINT ["/bin/sh", "-c", "if [ \"$1\" = operator ]; then exec node --no-opt --no-maglev --optimize-for-size --regexp-interpret-all dist/cli/main.js \"$@\"; fi; exec node dist/cli/main.js \"$@\"", "realm-operator"]
CMD ["operator"]
