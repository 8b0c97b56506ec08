# syntax=docker/dockerfile:1
# bedrock-gateway image: a static Go binary on distroless, run as non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t bedrock-gateway .
#
# Multi-platform: docker buildx build --platform linux/amd64,linux/arm64 .
# (the build stage runs natively and cross-compiles; no emulation).

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits reuse the module layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download && go mod verify
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
# CGO off: a static binary that needs no libc, so it runs on distroless
# static (no shell, no package manager, nothing to patch but this binary).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/gateway ./cmd/gateway

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /gateway
# Numeric, so Kubernetes' runAsNonRoot can verify it (65532 is distroless's
# nonroot user).
USER 65532:65532
# 8443: data plane (HTTPS, HTTP/2). 9090: admin (/metrics, /healthz, /readyz).
EXPOSE 8443 9090
# No HEALTHCHECK: distroless has no shell or curl; orchestrators probe
# /healthz and /readyz on the admin port (deploy/kubernetes/deployment.yaml).
# SIGTERM starts the graceful drain; give it time (docker stop -t 90).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/gateway"]
CMD ["serve", "-config", "/etc/bedrock-gateway/gateway.yaml"]
