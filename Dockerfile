# syntax=docker/dockerfile:1
# presence-coordinator: build with the dev dependencies, run with the production ones only.
#   docker build -t presence-coordinator .
#   docker run --rm presence-coordinator run --nats-url nats://nats:4222 --cluster-id prod
# Every flag also comes from its PRESENCE_* environment variable (see docs/operations.md).

FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:20-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY web ./web
COPY visualizations ./visualizations
COPY README.md ./
# The image's unprivileged user; the coordinator writes nothing unless told to (--record).
USER node
# --metrics-port, when set to it (metrics are off by default; see docker-compose.yml).
EXPOSE 9464
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["run"]
