// A real third-party QMP client against the plugin's control socket:
// Debian's golang-github-digitalocean-go-qemu, unchanged. Run by
// tests/integration/test-control.c as: qmp-go CONTROL_SOCKET SNAPSHOT_DIR.
// Prints one "ok ..." line per check; any failure exits 1 with the reason.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "qmp-go: "+format+"\n", args...)
	os.Exit(1)
}

func run(mon *qmp.SocketMonitor, cmd qmp.Command) map[string]json.RawMessage {
	text, err := json.Marshal(cmd)
	if err != nil {
		fail("%v", err)
	}
	out, err := mon.Run(text)
	if err != nil {
		fail("%s: %v", cmd.Execute, err)
	}
	var reply map[string]json.RawMessage
	if err := json.Unmarshal(out, &reply); err != nil {
		fail("%s: %v in %s", cmd.Execute, err, out)
	}
	return reply
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: qmp-go CONTROL_SOCKET SNAPSHOT_DIR")
	}
	mon, err := qmp.NewSocketMonitor("unix", os.Args[1], 5*time.Second)
	if err != nil {
		fail("connect: %v", err)
	}
	if err := mon.Connect(); err != nil {
		fail("handshake: %v", err)
	}
	defer mon.Disconnect()
	v := mon.Version
	fmt.Printf("ok greeting qemu %d.%d.%d package %s\n", v.QEMU.Major, v.QEMU.Minor, v.QEMU.Micro, v.Package)

	stream, err := mon.Events(nil)
	if err != nil {
		fail("events: %v", err)
	}
	// go-qemu hands events over an unbuffered channel: drain it all along,
	// or its reader stalls and no reply arrives.
	events := make(chan qmp.Event, 1024)
	go func() {
		for ev := range stream {
			events <- ev
		}
	}()

	var cmds []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(run(mon, qmp.Command{Execute: "query-commands"})["return"], &cmds); err != nil {
		fail("query-commands: %v", err)
	}
	names := []string{}
	for _, c := range cmds {
		names = append(names, c.Name)
	}
	fmt.Printf("ok query-commands %s\n", strings.Join(names, ","))

	var q struct {
		Vcpus   int  `json:"vcpus"`
		Running bool `json:"running"`
	}
	if err := json.Unmarshal(run(mon, qmp.Command{Execute: "query-vmsnap"})["return"], &q); err != nil {
		fail("query-vmsnap: %v", err)
	}
	fmt.Printf("ok query-vmsnap vcpus %d running %v\n", q.Vcpus, q.Running)

	if _, err := mon.Run([]byte(`{"execute": "no-such-command"}`)); err == nil {
		fail("no-such-command succeeded")
	} else {
		fmt.Printf("ok unknown command refused: %v\n", err)
	}

	args := map[string]string{"dir": os.Args[2], "memory": "copy", "then": "resume"}
	var saved struct {
		Kind     string  `json:"kind"`
		Downtime float64 `json:"downtime-ms"`
	}
	if err := json.Unmarshal(run(mon, qmp.Command{Execute: "snapshot-save", Args: args})["return"], &saved); err != nil {
		fail("snapshot-save: %v", err)
	}
	fmt.Printf("ok snapshot-save kind %s downtime %.1f ms\n", saved.Kind, saved.Downtime)

	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Event == "VMSNAP_SNAPSHOT_COMPLETED" {
				fmt.Printf("ok event %s dir %v\n", ev.Event, ev.Data["dir"])
				return
			}
		case <-timeout:
			fail("no VMSNAP_SNAPSHOT_COMPLETED event")
		}
	}
}
