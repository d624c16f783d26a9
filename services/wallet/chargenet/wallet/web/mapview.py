"""The offline map: stations projected onto an SVG, no tiles and no network needed.

Web Mercator (the projection tile servers use), scaled so the stations shown fill the view with
a margin, plus a graticule so the picture has bearings. With a tile server configured the
browser draws Leaflet over the same markers instead (see ``static/app.js``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 1000
HEIGHT = 640
MARGIN = 60
#: Smallest span shown, in projected units (~1.5 km at mid latitudes): one station alone still
#: gets a sensible zoom instead of an infinite one.
MIN_SPAN = 0.00004


@dataclass(frozen=True)
class Point:
    station_id: str
    latitude: float
    longitude: float
    label: str
    available: bool | None  # None: not known from the list


@dataclass(frozen=True)
class Marker:
    point: Point
    x: float
    y: float


@dataclass(frozen=True)
class GridLine:
    x1: float
    y1: float
    x2: float
    y2: float
    label: str


@dataclass(frozen=True)
class MapView:
    width: int
    height: int
    markers: tuple[Marker, ...]
    grid: tuple[GridLine, ...]
    centre: Marker | None  # where the search was made from


def project(latitude: float, longitude: float) -> tuple[float, float]:
    """Web Mercator in [0, 1] x [0, 1] (y grows southwards, as on screen)."""
    lat = max(-85.05112878, min(85.05112878, latitude))
    x = (longitude + 180.0) / 360.0
    sin = math.sin(math.radians(lat))
    y = 0.5 - math.log((1 + sin) / (1 - sin)) / (4 * math.pi)
    return x, y


def _unproject_lat(y: float) -> float:
    return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y))))


def _step(span_degrees: float) -> float:
    """A round graticule step giving 2-6 lines across the span."""
    for step in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 45):
        if span_degrees / step <= 6:
            return step
    return 90.0


def map_view(points: Sequence[Point], centre: tuple[float, float] | None = None) -> MapView:
    projected = [project(p.latitude, p.longitude) for p in points]
    anchors = projected + ([project(*centre)] if centre is not None else [])
    if not anchors:
        return MapView(WIDTH, HEIGHT, (), (), None)
    xs, ys = [a[0] for a in anchors], [a[1] for a in anchors]
    mid_x, mid_y = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    inner_w, inner_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN
    span = max(max(xs) - min(xs), (max(ys) - min(ys)) * inner_w / inner_h, MIN_SPAN)
    scale = inner_w / span  # pixels per projected unit, the same on both axes

    def place(x: float, y: float) -> tuple[float, float]:
        return (
            round(WIDTH / 2 + (x - mid_x) * scale, 1),
            round(HEIGHT / 2 + (y - mid_y) * scale, 1),
        )

    markers = tuple(Marker(p, *place(*xy)) for p, xy in zip(points, projected, strict=True))
    centre_marker = None
    if centre is not None:
        here = Point("", centre[0], centre[1], "search centre", None)
        centre_marker = Marker(here, *place(*project(*centre)))
    return MapView(WIDTH, HEIGHT, markers, _graticule(mid_x, mid_y, scale), centre_marker)


def _graticule(mid_x: float, mid_y: float, scale: float) -> tuple[GridLine, ...]:
    west, east = mid_x - WIDTH / 2 / scale, mid_x + WIDTH / 2 / scale
    north, south = mid_y - HEIGHT / 2 / scale, mid_y + HEIGHT / 2 / scale
    lon_w, lon_e = west * 360 - 180, east * 360 - 180
    lat_n, lat_s = _unproject_lat(max(north, 0.0)), _unproject_lat(min(south, 1.0))
    lines: list[GridLine] = []
    step = _step(lon_e - lon_w)
    lon = math.ceil(lon_w / step) * step
    while lon <= lon_e:
        x = round(WIDTH / 2 + ((lon + 180) / 360 - mid_x) * scale, 1)
        lines.append(GridLine(x, 0, x, HEIGHT, _degrees(lon, "E", "W")))
        lon += step
    step = _step(lat_n - lat_s)
    lat = math.ceil(lat_s / step) * step
    while lat <= lat_n:
        y = round(HEIGHT / 2 + (project(lat, 0)[1] - mid_y) * scale, 1)
        lines.append(GridLine(0, y, WIDTH, y, _degrees(lat, "N", "S")))
        lat += step
    return tuple(lines)


def _degrees(value: float, positive: str, negative: str) -> str:
    text = f"{abs(value):.3f}".rstrip("0").rstrip(".")
    return f"{text}°{positive if value >= 0 else negative}"
