//go:build !libcni13

// The libcni 1.1.2 build: GC and STATUS came with libcni 1.2 (spec 1.1.0), so this build refuses them as a
// bad request rather than pretending.
package main

import (
	"context"
	"fmt"

	"github.com/containernetworking/cni/libcni"
)

func maintenance(_ context.Context, _ *libcni.CNIConfig, _ *libcni.NetworkConfigList, req request) error {
	badRequest(fmt.Errorf("%s is not in this libcni: build with -tags libcni13 against libcni 1.3", req.Command))
	return nil
}
