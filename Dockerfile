# syntax=docker/dockerfile:1

# authd as a static binary on distroless. The same image serves, migrates
# and seeds: compose.yaml picks the subcommand with `command:`.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so a code change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /authd ./cmd/authd

# static-debian12 has CA certificates and tzdata but no shell or libc;
# :nonroot runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /authd /authd
EXPOSE 3001
ENTRYPOINT ["/authd"]
CMD ["serve"]
