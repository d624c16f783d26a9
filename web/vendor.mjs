// Copies the built Leaflet files into the wallet's static folder, so the driver app ships them
// itself and nothing loads from a CDN. Run after `npm ci`: `npm run vendor`.
import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "node_modules", "leaflet", "dist");
const target = join(
  here, "..", "services", "wallet", "chargenet", "wallet", "web", "static", "vendor", "leaflet",
);
mkdirSync(target, { recursive: true });
for (const file of ["leaflet.js", "leaflet.css"]) {
  cpSync(join(dist, file), join(target, file));
}
cpSync(join(dist, "images"), join(target, "images"), { recursive: true });
cpSync(join(here, "node_modules", "leaflet", "LICENSE"), join(target, "LICENSE"));
const version = JSON.parse(readFileSync(join(here, "node_modules", "leaflet", "package.json"))).version;
writeFileSync(join(target, "VERSION"), `leaflet ${version} (BSD-2-Clause), from npm via web/\n`);
console.log(`vendored leaflet ${version} into ${target}`);
