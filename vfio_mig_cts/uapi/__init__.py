"""The uAPI bindings: ``include/uapi/linux/vfio.h`` (migration) and ``iommufd.h``, as ctypes structs."""
