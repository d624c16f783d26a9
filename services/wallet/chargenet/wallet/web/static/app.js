// chargenet driver app: small enhancements over server-rendered pages. Every page works
// without this script; with it, the live view updates itself, "use my location" fills the
// search, and a configured tile server replaces the offline SVG map with Leaflet.
"use strict";

(function () {
  // -- money, exactly: integer token units (6 decimals), rounded half up to the minor unit --
  function money(units, currency, places) {
    const perMinor = 10 ** (6 - places);
    const minor = Math.floor((Number(units) + perMinor / 2) / perMinor);
    const whole = Math.floor(minor / 10 ** places);
    const frac = String(minor % 10 ** places).padStart(places, "0");
    const grouped = String(whole).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (places ? grouped + "." + frac : grouped) + " " + currency;
  }

  function live(section) {
    const url = section.dataset.stream;
    if (!url || !window.EventSource) return;
    const currency = section.dataset.currency;
    const places = Number(section.dataset.places);
    const field = (name) => section.querySelector('[data-field="' + name + '"]');
    const source = new EventSource(url);
    source.addEventListener("session", (event) => {
      const s = JSON.parse(event.data);
      field("state").textContent = s.state;
      field("energy").textContent = (s.energy_wh / 1000).toFixed(3);
      field("cost").textContent = money(s.cost_so_far, currency, places);
      field("remaining").textContent = money(Math.max(s.max_amount - s.cost_so_far, 0), currency, places);
      field("max").textContent = money(s.max_amount, currency, places);
      const budget = field("budget");
      budget.max = s.max_amount;
      budget.value = s.cost_so_far;
      if (s.amount_settled !== null) {
        field("settled-block").hidden = false;
        field("settled").textContent = money(s.amount_settled, currency, places);
        field("refunded").textContent = money(s.amount_refunded || 0, currency, places);
      }
      section.dataset.version = s.version;
    });
    source.addEventListener("end", () => {
      source.close();
      // The session is final: the page shows its outcome (and drops the stop button).
      window.location.reload();
    });
  }

  function locate(button) {
    if (!navigator.geolocation) return;
    button.hidden = false;
    button.addEventListener("click", () => {
      button.disabled = true;
      navigator.geolocation.getCurrentPosition(
        (position) => {
          document.getElementById("lat").value = position.coords.latitude.toFixed(6);
          document.getElementById("lon").value = position.coords.longitude.toFixed(6);
          button.disabled = false;
        },
        () => { button.disabled = false; },
        { timeout: 10000 },
      );
    });
  }

  function tiles(box) {
    if (!box.dataset.tiles || !window.L) return;
    const points = JSON.parse(document.getElementById("map-data").textContent);
    if (!points.length) return;
    box.replaceChildren();
    box.classList.add("tiled");
    const map = window.L.map(box);
    window.L.tileLayer(box.dataset.tiles, { attribution: box.dataset.attribution || "" }).addTo(map);
    const bounds = [];
    for (const p of points) {
      const marker = window.L.circleMarker([p.lat, p.lon], {
        radius: 12, weight: 3, color: "#fff", fillOpacity: 1,
        fillColor: p.available ? "#0b5d3b" : "#8a2c0d",
      }).addTo(map);
      marker.bindTooltip(p.number + ". " + p.name);
      marker.on("click", () => { window.location.href = "/app/stations/" + encodeURIComponent(p.id); });
      bounds.push([p.lat, p.lon]);
    }
    map.fitBounds(bounds, { padding: [40, 40], maxZoom: 16 });
  }

  const section = document.getElementById("live");
  if (section) live(section);
  const button = document.getElementById("locate");
  if (button) locate(button);
  const box = document.getElementById("map");
  if (box) tiles(box);
})();
