// Command loadgen is one load-generator process of the benchmark (bench/main.ts builds it with
// `go build` and starts one or more). It is compiled so that it costs clearly less CPU per
// message than the target it drives: the figures the bench reports are the target's, and the
// generator's own CPU per message is reported beside them.
//
// Control: one JSON command per line on stdin, one JSON reply per line on stdout, as described
// in bench/lib/commands.ts (the TypeScript side of the same protocol). Times are absolute
// milliseconds of the wall clock, comparable across the processes of one machine.
//
// Pairs of friends always live in one process, so a latency is measured on one clock: the
// message text carries its scheduled and actual send time, the recipient subtracts.
package main

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"time"
)

// nowMs is the absolute wall-clock time in milliseconds, as `absNow()` in commands.ts.
func nowMs() float64 { return float64(time.Now().UnixNano()) / 1e6 }

func sleepUntil(t float64) {
	if d := t - nowMs(); d > 0 {
		time.Sleep(time.Duration(d * 1e6))
	}
}

// partnerOf is bench/lib/layout.ts's pair rule: 2k-1 and 2k are friends.
func partnerOf(id int) int {
	if id%2 == 1 {
		return id + 1
	}
	return id - 1
}

// signToken signs `user_id:timestamp` as src/token.ts does (hex HMAC-SHA256 under the secret).
func signToken(secret []byte, userID int, timestamp int64) string {
	payload := fmt.Sprintf("%d:%d", userID, timestamp)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(payload))
	return payload + ":" + hex.EncodeToString(mac.Sum(nil))
}

// command is the union of every command's fields; `cmd` says which are meaningful.
type command struct {
	Cmd         string   `json:"cmd"`
	URLs        []string `json:"urls"`
	UserIDs     []int    `json:"userIds"`
	Concurrency int      `json:"concurrency"`
	Secret      string   `json:"secret"`
	TimeoutMs   float64  `json:"timeoutMs"`
	Window      int      `json:"window"`
	RatePerS    float64  `json:"ratePerS"`
	T0          float64  `json:"t0"`
	T1          float64  `json:"t1"`
	T2          float64  `json:"t2"`
	DrainMs     float64  `json:"drainMs"`
	// raw is the whole line, for commands with their own shape (the storm's).
	raw []byte
}

func main() {
	// Fewer collections: the generator holds little, and its CPU is what must stay small.
	debug.SetGCPercent(400)
	g := newGenerator()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	reply := func(v interface{}) {
		b, err := json.Marshal(v)
		if err != nil {
			b, _ = json.Marshal(map[string]string{"error": err.Error()})
		}
		out.Write(b)
		out.WriteByte('\n')
		out.Flush()
	}
	reply(map[string]bool{"ready": true})
	for in.Scan() {
		line := in.Bytes()
		if len(line) == 0 {
			continue
		}
		var cmd command
		if err := json.Unmarshal(line, &cmd); err != nil {
			reply(map[string]string{"error": "bad command: " + err.Error()})
			continue
		}
		cmd.raw = append([]byte(nil), line...)
		switch cmd.Cmd {
		case "connect":
			reply(g.connect(&cmd))
		case "throughput":
			reply(g.throughput(&cmd))
		case "latency":
			reply(g.latency(&cmd))
		case "closeAll":
			reply(g.closeAll(&cmd))
		case "stormStart":
			reply(g.stormStart(&cmd))
		case "stormMark":
			reply(g.stormMark(&cmd))
		case "stormStatus":
			reply(g.stormStatus(&cmd))
		case "stormReport":
			reply(g.stormReport(&cmd))
		case "stormQuiet":
			reply(g.stormQuiet(&cmd))
		case "stormStop":
			reply(g.stormStop(&cmd))
		case "exit":
			reply(map[string]bool{})
			return
		default:
			reply(map[string]string{"error": "unknown command " + cmd.Cmd})
		}
	}
}
