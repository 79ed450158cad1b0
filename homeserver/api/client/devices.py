"""Device management (device_management.yaml)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.core.errors import not_found
from homeserver.http.params import get_str, get_str_list
from homeserver.http.routing import ApiRequest, Router

from .uia_stages import require_password_uia

if TYPE_CHECKING:
    from homeserver.storage.stores.devices import Device

routes = Router()


def _device_json(device: Device) -> dict[str, Any]:
    body: dict[str, Any] = {"device_id": device.device_id}
    if device.display_name is not None:
        body["display_name"] = device.display_name
    if device.last_seen_ts is not None:
        body["last_seen_ts"] = device.last_seen_ts
    if device.last_seen_ip is not None:
        body["last_seen_ip"] = device.last_seen_ip
    return body


@routes.get("/devices")
async def getDevices(req: ApiRequest) -> Any:
    devices = await req.services.devices.list_devices(req.user)
    return {"devices": [_device_json(d) for d in req.services.client_ips.with_pending(devices)]}


@routes.get("/devices/{deviceId}")
async def getDevice(req: ApiRequest) -> Any:
    device = await req.services.devices.get_device(req.user, req.path["deviceId"])
    if device is None:
        raise not_found("Device not found")
    return _device_json(req.services.client_ips.with_pending([device])[0])


@routes.put("/devices/{deviceId}")
async def updateDevice(req: ApiRequest) -> Any:
    body = await req.json()
    display_name = get_str(body, "display_name")
    found = await req.services.devices.set_display_name(req.user, req.path["deviceId"], display_name)
    if not found:
        raise not_found("Device not found")
    return {}


@routes.delete("/devices/{deviceId}")
async def deleteDevice(req: ApiRequest) -> Any:
    body = await req.json()
    device_id = req.path["deviceId"]
    if await req.services.devices.get_device(req.user, device_id) is None:
        raise not_found("Device not found")
    await require_password_uia(req, body)
    await req.services.accounts.delete_devices(req.user.user_id, [device_id])
    return {}


@routes.post("/delete_devices")
async def deleteDevices(req: ApiRequest) -> Any:
    body = await req.json()
    device_ids = get_str_list(body, "devices", required=True)
    await require_password_uia(req, body)
    await req.services.accounts.delete_devices(req.user.user_id, device_ids)
    return {}
