# Cellar's image: every role (`cellar run normalizer|aggregator|sink-postgres|sink-redis|embedded|capture`) and the
# CLI (`cellar migrate`, `cellar schemas …`, `cellar connectors …`, `cellar dlq …`). Built from the repository root:
#   docker build -f infra/compose/cellar.Dockerfile -t cellar:local .
# Runs the TypeScript sources through tsx (a runtime dependency); production dependencies only.
FROM node:20.18.1-bookworm-slim

ENV NODE_ENV=production \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false
WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --omit=dev --loglevel=error && npm cache clean --force

COPY tsconfig.json ./
COPY bin ./bin
COPY pipelines ./pipelines
COPY connectors ./connectors
COPY schemas ./schemas
COPY sinks ./sinks
COPY infra/local ./infra/local

RUN printf '#!/bin/sh\nexec node --max-semi-space-size=64 --initial-old-space-size=256 --import tsx /app/pipelines/cli/main.ts "$@"\n' > /usr/local/bin/cellar \
 && chmod 755 /usr/local/bin/cellar \
 && mkdir -p /etc/cellar/suppliers

USER node
ENV CELLAR_SUPPLIERS_DIR=/etc/cellar/suppliers
# /metrics, /healthz, /readyz when CELLAR_HTTP_PORT is set (the compose stack uses 9464).
EXPOSE 9464
ENTRYPOINT ["cellar"]
CMD ["--help"]
