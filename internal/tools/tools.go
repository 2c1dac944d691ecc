//go:build tools

// Package tools pins dependencies the project is about to use, so that
// parallel work does not race on go.mod. Removed once all are imported.
package tools

import (
	_ "github.com/distribution/distribution/v3/registry/api/errcode"
	_ "github.com/distribution/reference"
	_ "github.com/docker/cli/cli-plugins/metadata"
	_ "github.com/docker/cli/cli-plugins/plugin"
	_ "github.com/docker/cli/cli/command"
	_ "github.com/google/go-containerregistry/pkg/authn"
	_ "github.com/google/go-containerregistry/pkg/name"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/random"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/gorilla/mux"
	_ "github.com/opencontainers/go-digest"
	_ "github.com/opencontainers/image-spec/specs-go/v1"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/spf13/cobra"
	_ "github.com/transparency-dev/formats/log"
	_ "github.com/transparency-dev/merkle/proof"
	_ "github.com/transparency-dev/merkle/rfc6962"
	_ "github.com/transparency-dev/tessera"
	_ "github.com/transparency-dev/tessera/api"
	_ "github.com/transparency-dev/tessera/api/layout"
	_ "github.com/transparency-dev/tessera/client"
	_ "github.com/transparency-dev/tessera/storage/mysql"
	_ "github.com/transparency-dev/tessera/storage/posix"
	_ "github.com/transparency-dev/tessera/storage/posix/antispam"
	_ "go.etcd.io/bbolt"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/mod/sumdb/note"
	_ "golang.org/x/sys/unix"
	_ "golang.org/x/term"
)
