# Static build, distroless runtime, non-root. Build: docker build -t portcullis .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN scripts/build.sh /out/portcullis

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/portcullis /usr/local/bin/portcullis
USER 65532:65532
EXPOSE 9001 9090 9002
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve", "--policy=/etc/portcullis/policy/policy.yaml", "--grpc-addr=0.0.0.0:9001", "--admin-addr=0.0.0.0:9090"]
