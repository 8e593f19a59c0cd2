//go:build libcni13

// GC and STATUS (CNI spec 1.1.0), which libcni has since 1.2: built only against libcni 1.3 (the libcni13
// build tag), since libcni 1.1.2 has neither.
package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// maintenance runs GCNetworkList (a DEL for each cached attachment not in req.ValidAttachments, then GC on
// each plugin with cni.dev/valid-attachments) or GetStatusNetworkList (STATUS on each plugin, first error
// returned), as a runtime calls them: no RuntimeConf, only the conflist.
func maintenance(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, req request) error {
	if req.Command == "STATUS" {
		return cni.GetStatusNetworkList(ctx, list)
	}
	var valid []types.GCAttachment
	if len(req.ValidAttachments) > 0 {
		if err := json.Unmarshal(req.ValidAttachments, &valid); err != nil {
			badRequest(fmt.Errorf("validAttachments: %w", err))
		}
	}
	return cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: valid})
}
