# syntax=docker/dockerfile:1
# Build stage: compile TypeScript with the dev dependencies.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY storage ./storage
COPY server ./server
COPY cli ./cli
COPY test ./test
COPY bench ./bench
COPY web ./web
RUN npm ci && npm run build && npm prune --omit=dev

# Runtime stage: compiled code and production dependencies only, as a non-root user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    CAIRN_DATA=/data \
    CAIRN_HOST=0.0.0.0 \
    CAIRN_PORT=8080
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/storage ./dist/storage
COPY --from=build /app/dist/server ./dist/server
COPY --from=build /app/dist/cli ./dist/cli
COPY --from=build /app/dist/web ./dist/web
COPY web/static ./web/static
COPY bin ./bin
RUN groupadd --system cairn && useradd --system --gid cairn --home-dir /data cairn \
    && mkdir -p /data && chown cairn:cairn /data
USER cairn
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.CAIRN_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "/app/bin/cairn.js"]
CMD ["serve"]
