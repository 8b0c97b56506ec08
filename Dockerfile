# syntax=docker/dockerfile:1
# Multi-stage build: a static, non-root binary on distroless.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/gateway ./cmd/gateway

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /gateway
USER nonroot:nonroot
EXPOSE 8443
ENTRYPOINT ["/gateway"]
CMD ["serve", "-config", "/etc/bedrock-gateway/gateway.yaml"]
