# Packaging.cmake - `make install` (cmake --install, PREFIX and DESTDIR) and `make deb`
# (CPack's DEB generator): the binary, a man page generated from `sov --help` (help2man),
# the hardened systemd unit, the default configuration, docs; the package's maintainer
# scripts make the `sov` system user and /var/lib/sov (deploy/debian/).
include(GNUInstallDirs)

install(TARGETS sov RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_SOURCE_DIR}/docs/DEPLOY.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The man page: help2man runs the built binary's --help and --version (Debian help2man).
find_program(SOV_HELP2MAN help2man)
if(SOV_HELP2MAN)
  set(SOV_MAN ${CMAKE_BINARY_DIR}/sov.1)
  add_custom_command(OUTPUT ${SOV_MAN}.gz
    COMMAND ${SOV_HELP2MAN} --no-info --section=1
            "--name=a sovereign AI inference stack, OpenAI-compatible server"
            --include=${CMAKE_SOURCE_DIR}/deploy/sov.h2m --output=${SOV_MAN} $<TARGET_FILE:sov>
    COMMAND gzip -9nf ${SOV_MAN}
    DEPENDS sov ${CMAKE_SOURCE_DIR}/deploy/sov.h2m
    COMMENT "man page sov.1 from sov --help (help2man)"
    VERBATIM)
  add_custom_target(sov_man ALL DEPENDS ${SOV_MAN}.gz)
  install(FILES ${SOV_MAN}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(STATUS "help2man not found: no man page (apt-get install help2man)")
endif()

# The unit and the configuration go where systemd and the admin look: /lib/systemd/system
# and /etc/sov for the /usr prefix (the package), PREFIX/lib/systemd/system and
# PREFIX/etc/sov otherwise. Decided at install time, so that cpack's /usr applies to a
# build configured for /usr/local; ExecStart follows the prefix.
install(CODE "
  if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    set(_sov_etc /etc/sov)
    set(_sov_unitdir /lib/systemd/system)
  else()
    set(_sov_etc \"\${CMAKE_INSTALL_PREFIX}/etc/sov\")
    set(_sov_unitdir \"\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\")
  endif()
  file(READ \"${CMAKE_SOURCE_DIR}/deploy/systemd/sov.service\" _sov_unit)
  string(REPLACE \"/usr/bin/sov \" \"\${CMAKE_INSTALL_PREFIX}/bin/sov \" _sov_unit \"\${_sov_unit}\")
  string(REPLACE \"/etc/sov/\" \"\${_sov_etc}/\" _sov_unit \"\${_sov_unit}\")
  file(WRITE \"${CMAKE_BINARY_DIR}/sov.service\" \"\${_sov_unit}\")
  file(INSTALL DESTINATION \"\${_sov_unitdir}\" TYPE FILE FILES \"${CMAKE_BINARY_DIR}/sov.service\")
  file(INSTALL DESTINATION \"\${_sov_etc}\" TYPE FILE FILES \"${CMAKE_SOURCE_DIR}/deploy/sov.conf\")
")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME sov)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "sov maintainers <sov@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "sovereign AI inference server (OpenAI-compatible, sealed)")
set(CPACK_PACKAGE_DESCRIPTION "sov serves GGUF language models over an OpenAI-compatible HTTP API with \
continuous batching, tenants, a tamper-evident audit log and an egress lockdown. The package \
installs the sov binary, its man page, a hardened systemd unit (sov.service, disabled until a \
model is configured) and /etc/sov/sov.conf, and makes the sov system user and /var/lib/sov.")
# the package installs under /usr whatever the build's own CMAKE_INSTALL_PREFIX
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_SET_DESTDIR ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/deploy/debian/postinst ${CMAKE_SOURCE_DIR}/deploy/debian/prerm
    ${CMAKE_SOURCE_DIR}/deploy/debian/postrm ${CMAKE_SOURCE_DIR}/deploy/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
