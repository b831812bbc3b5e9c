// Runs the firmware's pure core under a real MicroPython (the WebAssembly
// build published as @micropython/micropython-webassembly-pyscript) in Node:
//
//   npm ci --prefix firmware && node firmware/micropython_check.mjs
//
// The device-side modules and the golden payloads are copied into
// MicroPython's in-memory filesystem, then firmware/selfcheck.py runs there.
// Then esp32.py (the board glue) runs against stand-in machine, network and
// umqtt.simple modules (tests/mp_board/), since there is no GPIO here.
// Works offline once installed (the .wasm ships inside the npm package).
// Exit code 0 only if every check passed.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const here = dirname(fileURLToPath(import.meta.url));
// Everything that runs on the board except the hardware glue (esp32.py needs
// machine/network) and the CPython-only modules (transport_paho.py, host.py).
const CORE = [
  "__init__.py",
  "signing.py",
  "timefmt.py",
  "backlog.py",
  "journal.py",
  "decisions.py",
  "meter.py",
  "drivers.py",
  "modbus.py",
  "transport_memory.py",
  "selfcheck.py",
];

const lines = [];
const mp = await loadMicroPython({
  heapsize: 4 * 1024 * 1024,
  stdout: (line) => {
    lines.push(line);
    console.log(line);
  },
  stderr: (line) => console.error(line),
});

mp.FS.mkdir("/firmware");
for (const name of CORE) {
  mp.FS.writeFile(`/firmware/${name}`, readFileSync(join(here, name)));
}
mp.FS.writeFile("/firmware/esp32.py", readFileSync(join(here, "esp32.py")));
const board = join(here, "tests", "mp_board");
mp.FS.mkdir("/board");
mp.FS.mkdir("/board/umqtt");
for (const name of ["machine.py", "network.py", "esp32check.py", "umqtt/__init__.py", "umqtt/simple.py"]) {
  mp.FS.writeFile(`/board/${name}`, readFileSync(join(board, name)));
}
mp.FS.mkdir("/golden");
for (const name of readdirSync(join(here, "golden"))) {
  if (name.endsWith(".json") || name.endsWith(".canonical")) {
    mp.FS.writeFile(`/golden/${name}`, readFileSync(join(here, "golden", name)));
  }
}

try {
  mp.runPython(`
import sys
sys.path.insert(0, "/")
print("micropython", sys.implementation.version, sys.implementation._build)
import firmware.selfcheck
firmware.selfcheck.main("/golden", "/tmp/selfcheck")
sys.path.insert(0, "/board")
import esp32check
esp32check.main("/tmp/esp32check")
`);
} catch (error) {
  console.error(String(error));
  process.exit(1);
}
const summaries = lines.filter((line) => / checks ok, 0 failed$/.test(line));
if (summaries.length !== 2) {
  console.error("expected two summary lines (selfcheck, esp32 glue)");
  process.exit(1);
}
