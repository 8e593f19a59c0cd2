// A runtime in one page: drives a CNI conflist through libcni exactly as Nomad (via go-cni), containerd,
// CRI-O and podman 4 do, so the tests exercise our plugins under real runtime code rather than our own idea
// of it. Built offline from this directory twice, against two libcni releases:
//   - scripts/install-runtimes.sh: Debian bookworm's golang-github-appc-cni-dev (libcni 1.1.2, what Nomad
//     1.7-1.8 link) with bookworm's golang-go; ADD, CHECK and DEL.
//   - scripts/install-libcni-1.3.sh, with the build tag libcni13: Debian forky's golang-github-appc-cni-dev
//     (libcni 1.3.0, spec 1.1.0) with Go 1.23 from bookworm-backports; also GC and STATUS (gc_status.go;
//     the other build answers them with no_gc_status.go's error).
//
// Usage: libcni-driver < request.json, one request as JSON on stdin (see request). It prints one JSON
// object on stdout: {"result": ...} after ADD, {} after CHECK, DEL, GC and STATUS, or {"error": "...", "code": N,
// "msg": "...", "details": "..."} when libcni returned an error (code, msg and details only when a plugin
// printed a CNI error). Exit 0 on success, 1 on an error from libcni, 2 on a bad request.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// request is what the tests send: the conflist and everything a runtime puts in a RuntimeConf.
type request struct {
	Command        string                 `json:"command"` // ADD, CHECK, DEL; GC and STATUS in the libcni13 build
	Conflist       json.RawMessage        `json:"conflist"`
	CniPath        []string               `json:"cniPath"`
	CacheDir       string                 `json:"cacheDir"`
	ContainerID    string                 `json:"containerId"`
	NetNS          string                 `json:"netns"`
	IfName         string                 `json:"ifname"`
	Args           [][2]string            `json:"args"`
	CapabilityArgs map[string]interface{} `json:"capabilityArgs"`
	// GC only: the attachments still alive, as [{"containerID": ..., "ifname": ...}] (kept raw here: libcni
	// 1.1.2 has no type for them).
	ValidAttachments json.RawMessage `json:"validAttachments"`
}

type failure struct {
	Error   string `json:"error"`
	Code    uint   `json:"code,omitempty"`
	Msg     string `json:"msg,omitempty"`
	Details string `json:"details,omitempty"`
}

func main() {
	if len(os.Args) != 1 {
		badRequest(fmt.Errorf("usage: %s < request.json", os.Args[0]))
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		badRequest(err)
	}
	var req request
	if err := json.Unmarshal(raw, &req); err != nil {
		badRequest(fmt.Errorf("request: %w", err))
	}
	list, err := libcni.ConfListFromBytes(req.Conflist)
	if err != nil {
		badRequest(fmt.Errorf("conflist: %w", err))
	}
	// A private cache dir keeps the tests' result cache out of the host's /var/lib/cni.
	cni := libcni.NewCNIConfigWithCacheDir(req.CniPath, req.CacheDir, nil)
	rt := &libcni.RuntimeConf{
		ContainerID:    req.ContainerID,
		NetNS:          req.NetNS,
		IfName:         req.IfName,
		Args:           req.Args,
		CapabilityArgs: req.CapabilityArgs,
	}
	ctx := context.Background()

	var out interface{} = struct{}{}
	switch req.Command {
	case "ADD":
		var result types.Result
		result, err = cni.AddNetworkList(ctx, list, rt)
		if err == nil {
			out = map[string]types.Result{"result": result}
		}
	case "CHECK":
		err = cni.CheckNetworkList(ctx, list, rt)
	case "DEL":
		err = cni.DelNetworkList(ctx, list, rt)
	case "GC", "STATUS":
		err = maintenance(ctx, cni, list, req)
	default:
		badRequest(fmt.Errorf("unknown command %q", req.Command))
	}
	if err != nil {
		f := failure{Error: err.Error()}
		var cniErr *types.Error
		if errors.As(err, &cniErr) {
			f.Code, f.Msg, f.Details = cniErr.Code, cniErr.Msg, cniErr.Details
		}
		print(f)
		os.Exit(1)
	}
	print(out)
}

func print(v interface{}) {
	if err := json.NewEncoder(os.Stdout).Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

func badRequest(err error) {
	fmt.Fprintf(os.Stderr, "libcni-driver: %v\n", err)
	os.Exit(2)
}
