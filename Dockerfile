# bedrock-gateway image for local builds: compiles the gateway from source
# in a Go stage, then copies the static binary onto distroless, run as
# non-root. Release images are built by GoReleaser from Dockerfile.release
# instead (same runtime stage, prebuilt binaries).
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t bedrock-gateway .
#
# Multi-platform: docker buildx build --platform linux/amd64,linux/arm64 .
# (the build stage runs natively and cross-compiles; no emulation).
#
# Base images are fully qualified and pinned by the digest of their
# multi-platform index, so a rebuild of an old commit gets the same bases;
# the tag stays for readability and for digest-updating bots. To refresh:
#   crane digest docker.io/library/golang:1.26-bookworm
#   crane digest gcr.io/distroless/static-debian12:nonroot
# and change the runtime digest in Dockerfile.release too
# (release/release_test.go checks both files agree).
#
# No "# syntax=" line: it would pull the Dockerfile frontend image by a
# mutable tag. BuildKit's built-in frontend (Docker 23+, buildx) supports
# everything used here, RUN --mount included.

FROM --platform=$BUILDPLATFORM docker.io/library/golang:1.26-bookworm@sha256:9fdc884aacc3bec89b20ffc69f4bb369c78210e3e4f600387b5128b12c199f81 AS build
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

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
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
